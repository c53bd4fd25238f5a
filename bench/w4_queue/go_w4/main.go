// bench/w4_queue/go_w4/main.go: W4 on a Go buffered channel (peer).
//
// "go.chan1024": a chan uintptr of capacity 1024, P producer goroutines and
// C consumer goroutines (GOMAXPROCS left at its default, the CPU count).
// Items and checks are those of w4.h: producer p sends (seq<<4)|p for seq
// 1..N/P; every consumer counts, sums and checks per-producer order; the
// last producer closes the channel, which ends every consumer's range loop.
// A wrong tally exits with status 1.
//
// Command line: go.chan1024 PRODUCERS CONSUMERS N. Runs N/8 items as a
// warm-up, then N, and prints one JSON line on stdout.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	impl         = "go.chan1024"
	capacity     = 1024
	producersMax = 16
	seqShift     = 4
)

type tally struct {
	count, sum, disorder uint64
	last                 [producersMax]uint64
	_                    [64]byte // keep consumers off each other's cache lines
}

func runOnce(producers, consumers int, per uint64) float64 {
	ch := make(chan uintptr, capacity)
	tallies := make([]tally, consumers)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	left := int32(producers)
	ready.Add(producers + consumers)
	done.Add(consumers)
	for i := 0; i < consumers; i++ {
		go func(t *tally) {
			defer done.Done()
			ready.Done()
			<-start
			for v := range ch {
				p := v & (producersMax - 1)
				seq := uint64(v >> seqShift)
				if seq <= t.last[p] {
					t.disorder++
				}
				t.last[p] = seq
				t.count++
				t.sum += uint64(v)
			}
		}(&tallies[i])
	}
	for p := 0; p < producers; p++ {
		go func(p uintptr) {
			ready.Done()
			<-start
			for s := uint64(1); s <= per; s++ {
				ch <- uintptr(s<<seqShift) | p
			}
			if atomic.AddInt32(&left, -1) == 0 {
				close(ch)
			}
		}(uintptr(p))
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	secs := time.Since(t0).Seconds()

	var count, sum, disorder, wantSum uint64
	for i := range tallies {
		count += tallies[i].count
		sum += tallies[i].sum
		disorder += tallies[i].disorder
	}
	for p := 0; p < producers; p++ {
		wantSum += (1<<seqShift)*(per*(per+1)/2) + uint64(p)*per
	}
	wantCount := uint64(producers) * per
	if count != wantCount || sum != wantSum || disorder != 0 {
		fmt.Fprintf(os.Stderr, "bench: %s %dp%dc: WRONG RESULT: took %d items (want %d), sum %d (want %d), %d out of producer order\n",
			impl, producers, consumers, count, wantCount, sum, wantSum, disorder)
		os.Exit(1)
	}
	return secs
}

func positive(s, what string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		fmt.Fprintf(os.Stderr, "bench: %s must be a positive integer, got '%s'\n", what, s)
		os.Exit(1)
	}
	return v
}

func main() {
	if len(os.Args) != 5 || os.Args[1] != impl {
		fmt.Fprintf(os.Stderr, "usage: %s %s PRODUCERS CONSUMERS N\n", os.Args[0], impl)
		os.Exit(2)
	}
	producers := positive(os.Args[2], "PRODUCERS")
	consumers := positive(os.Args[3], "CONSUMERS")
	n := positive(os.Args[4], "N")
	if producers > producersMax || consumers > 1024 || n/producers == 0 {
		fmt.Fprintf(os.Stderr, "bench: at most %d producers, 1024 consumers, N >= PRODUCERS\n", producersMax)
		os.Exit(1)
	}
	per := n / producers
	warm := per / 8
	if warm == 0 {
		warm = 1
	}
	runOnce(int(producers), int(consumers), warm)
	secs := runOnce(int(producers), int(consumers), per)
	total := per * producers
	fmt.Printf("{\"workload\":\"W4\",\"impl\":\"%s\",\"variant\":\"%dp%dc\",\"n\":%d,\"value\":%.6g,\"unit\":\"items/s\",\"secs\":%.6f}\n",
		impl, producers, consumers, total, float64(total)/secs, secs)
}
