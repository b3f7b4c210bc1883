package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/cache"
)

func rdtsc() uint64

var (
	tscOnce sync.Once
	tscKHz  int64
)

// hostTSCKHz returns the host's TSC rate. Under TCG the guest's TSC is the host's, so the guest
// must be told this rate: a wrong tsc_early_khz makes the guest clock run fast or slow (2 GHz
// claimed on a 2.6 GHz host ran 30% fast) and its clocksource watchdog then drops the TSC for
// 4 ms jiffies, which ruins every boot timing the guest reports. Measuring takes 30 ms, a
// noticeable part of a cold start, so the rate is cached for the host's boot (keyed by its
// boot_id: the rate cannot change without a reboot).
func hostTSCKHz() int64 {
	tscOnce.Do(func() {
		cache := tscCachePath()
		if khz, ok := readTSCCache(cache); ok {
			tscKHz = khz
			return
		}
		tscKHz = measureTSCKHz()
		if tscKHz > 0 && cache != "" {
			_ = atomicfile.WriteFile(cache, []byte(fmt.Sprintf("%s %d\n", bootID(), tscKHz)), 0o644)
		}
	})
	return tscKHz
}

// measureTSCKHz takes five 20 ms samples and returns the median, rounded to 1 MHz (well
// inside what the kernel tolerates). It runs once per host boot (the result is cached), so it
// can afford samples long enough that a busy host's scheduling delays do not skew them.
func measureTSCKHz() int64 {
	var samples []int64
	for range 5 {
		t0, c0 := time.Now(), rdtsc()
		time.Sleep(20 * time.Millisecond)
		t1, c1 := time.Now(), rdtsc()
		ns := t1.Sub(t0).Nanoseconds()
		if ns <= 0 || c1 <= c0 {
			return 0
		}
		samples = append(samples, int64(float64(c1-c0)/float64(ns)*1e6))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	return (samples[len(samples)/2] + 500) / 1000 * 1000
}

func tscCachePath() string {
	dir, err := cache.DefaultDir()
	if err != nil || bootID() == "" {
		return ""
	}
	return filepath.Join(dir, cache.HostTSCFile)
}

// readTSCCache returns the cached rate if it was measured during this boot of the host.
func readTSCCache(path string) (int64, bool) {
	if path == "" {
		return 0, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	id, v, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || id != bootID() {
		return 0, false
	}
	khz, err := strconv.ParseInt(v, 10, 64)
	if err != nil || khz < 100_000 || khz > 20_000_000 {
		return 0, false
	}
	return khz, true
}

// bootID identifies this boot of the host ("" when unknown); read once per process.
var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})
