// bench/w1_pool/go_w1/main.go: W1 on a Go worker pool (peer).
//
// "go.pool2", variant "fire-and-forget": GOMAXPROCS=2 (set here with
// runtime.GOMAXPROCS), 2 worker goroutines ranging over a channel of jobs of
// capacity 1024 (as W4's channel); a job is a function and its argument, and
// the function is the common task body: an atomic add on a shared counter.
// The submitter sends N jobs, closes the channel and waits for both workers
// (a WaitGroup): the clock stops once every job has run. The workers are
// started before the clock. A count other than N exits with status 1.
//
// Command line: go.pool2 fire-and-forget N. Runs N/8 jobs as a warm-up,
// then N, and prints one JSON line on stdout.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	impl     = "go.pool2"
	variant  = "fire-and-forget"
	workers  = 2
	capacity = 1024
)

type job struct {
	fn  func(uint64)
	arg uint64
}

type counter struct {
	_   [64]byte
	ran uint64
	_   [64]byte
}

var tally counter

func task(arg uint64) { atomic.AddUint64(&tally.ran, 1) }

func runOnce(n uint64) float64 {
	atomic.StoreUint64(&tally.ran, 0)
	jobs := make(chan job, capacity)
	var ready, done sync.WaitGroup
	ready.Add(workers)
	done.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			defer done.Done()
			ready.Done()
			for j := range jobs {
				j.fn(j.arg)
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	for i := uint64(0); i < n; i++ {
		jobs <- job{task, i}
	}
	close(jobs)
	done.Wait()
	secs := time.Since(t0).Seconds()
	if ran := atomic.LoadUint64(&tally.ran); ran != n {
		fmt.Fprintf(os.Stderr, "bench: %s: WRONG RESULT: %d tasks ran, %d submitted\n", impl, ran, n)
		os.Exit(1)
	}
	return secs
}

func main() {
	if len(os.Args) != 4 || os.Args[1] != impl || os.Args[2] != variant {
		fmt.Fprintf(os.Stderr, "usage: %s %s %s N\n", os.Args[0], impl, variant)
		os.Exit(2)
	}
	n, err := strconv.ParseUint(os.Args[3], 10, 64)
	if err != nil || n == 0 {
		fmt.Fprintf(os.Stderr, "bench: N must be a positive integer, got '%s'\n", os.Args[3])
		os.Exit(1)
	}
	runtime.GOMAXPROCS(workers)
	warm := n / 8
	if warm == 0 {
		warm = 1
	}
	runOnce(warm)
	secs := runOnce(n)
	fmt.Printf("{\"workload\":\"W1\",\"impl\":\"%s\",\"variant\":\"%s\",\"n\":%d,\"value\":%.6g,\"unit\":\"tasks/s\",\"secs\":%.6f}\n",
		impl, variant, n, float64(n)/secs, secs)
}
