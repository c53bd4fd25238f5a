// bench/w6a_coro/go_w6: Go's side of W6a and W6b.
//
//	go_w6 IMPL VARIANT N
//
//	W6a pingpong  GOMAXPROCS(1): two goroutines pass an int over two
//	              unbuffered channels, N round trips: round trips/s
//	W6a switch    GOMAXPROCS(1): two goroutines call runtime.Gosched N times
//	              each: ns per switch
//	W6b spawn     N goroutines that each yield once (runtime.Gosched), joined
//	              with a WaitGroup, default GOMAXPROCS (impl go) or 1
//	              (impl go.1proc): goroutines/s
//	W6b mem       the same run: (peak RSS after - before) / N, bytes per
//	              goroutine
//	W6b mem.allalive  the same, but every goroutine waits on a channel
//	              until all N exist (all N stacks at once)
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func emit(workload, impl, variant string, n uint64, value float64, unit string, secs float64) {
	fmt.Printf("{\"workload\":\"%s\",\"impl\":\"%s\",\"variant\":\"%s\",\"n\":%d,\"value\":%g,\"unit\":\"%s\",\"secs\":%f}\n",
		workload, impl, variant, n, value, unit, secs)
}

func maxrssKiB() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

func die(msg string) {
	fmt.Fprintln(os.Stderr, "go_w6:", msg)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		die("usage: go_w6 IMPL VARIANT N")
	}
	impl, variant := os.Args[1], os.Args[2]
	n, err := strconv.ParseUint(os.Args[3], 10, 64)
	if err != nil || n == 0 {
		die("bad N")
	}
	switch variant {
	case "pingpong":
		runtime.GOMAXPROCS(1)
		a, b := make(chan uint64), make(chan uint64)
		t0 := time.Now()
		go func() {
			for v := range a {
				b <- v + 1
			}
		}()
		v := uint64(0)
		for i := uint64(0); i < n; i++ {
			a <- v
			w := <-b
			if w != v+1 {
				die("wrong value")
			}
			v = w
		}
		close(a)
		secs := time.Since(t0).Seconds()
		emit("W6a", impl, variant, n, float64(n)/secs, "roundtrips/s", secs)
	case "switch":
		runtime.GOMAXPROCS(1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			for i := uint64(0); i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
		t0 := time.Now()
		for i := uint64(0); i < n; i++ {
			runtime.Gosched()
		}
		secs := time.Since(t0).Seconds()
		wg.Wait()
		emit("W6a", impl, variant, n, secs*1e9/float64(2*n), "ns", secs)
	case "spawn", "mem", "mem.allalive":
		if impl == "go.1proc" {
			runtime.GOMAXPROCS(1)
		}
		rss0 := maxrssKiB()
		var wg sync.WaitGroup
		var done sync.Mutex
		finished := uint64(0)
		gate := make(chan struct{})
		allAlive := variant == "mem.allalive"
		t0 := time.Now()
		wg.Add(int(n))
		for i := uint64(0); i < n; i++ {
			go func() {
				if allAlive {
					<-gate
				} else {
					runtime.Gosched()
				}
				done.Lock()
				finished++
				done.Unlock()
				wg.Done()
			}()
		}
		close(gate)
		wg.Wait()
		secs := time.Since(t0).Seconds()
		rss1 := maxrssKiB()
		if finished != n {
			die("not all finished")
		}
		if variant != "spawn" {
			// KiB growth rounded up to the next KiB, as in every W6b program.
			emit("W6b", impl, variant, n, float64(rss1-rss0+1)*1024/float64(n), "B/coro", secs)
		} else {
			emit("W6b", impl, variant, n, float64(n)/secs, "coros/s", secs)
		}
	default:
		die("unknown variant " + variant)
	}
}
