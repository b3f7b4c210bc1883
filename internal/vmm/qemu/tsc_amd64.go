package qemu

import (
	"sort"
	"sync"
	"time"
)

func rdtsc() uint64

var (
	tscOnce sync.Once
	tscKHz  int64
)

// hostTSCKHz measures the host's TSC rate. Under TCG the guest's TSC is the host's, so the
// guest must be told this rate: a wrong tsc_early_khz makes the guest clock run fast or slow
// (2 GHz claimed on a 2.6 GHz host ran 30% fast) and its clocksource watchdog then drops the
// TSC for 4 ms jiffies, which ruins every boot timing the guest reports. Three 10 ms samples,
// median; the result is rounded to 1 MHz, well inside what the kernel tolerates.
func hostTSCKHz() int64 {
	tscOnce.Do(func() {
		var samples []int64
		for i := 0; i < 3; i++ {
			t0, c0 := time.Now(), rdtsc()
			time.Sleep(10 * time.Millisecond)
			t1, c1 := time.Now(), rdtsc()
			ns := t1.Sub(t0).Nanoseconds()
			if ns <= 0 || c1 <= c0 {
				return
			}
			samples = append(samples, int64(float64(c1-c0)/float64(ns)*1e6))
		}
		sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
		tscKHz = (samples[1] + 500) / 1000 * 1000
	})
	return tscKHz
}
