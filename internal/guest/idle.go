package guest

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// settled returns once the CPU has been idle for at least half of a 50 ms window (the workload
// has started and waits for something), or after max. Its first look at /proc/stat waits one
// window: it runs beside the workload's start, and under software emulation the kernel's first
// /proc/stat (every CPU's and interrupt's counters, formatted) costs that start milliseconds.
func settled(max time.Duration) {
	const window = 50 * time.Millisecond
	deadline := time.Now().Add(max)
	time.Sleep(window)
	prev, ok := idleTime()
	if !ok {
		time.Sleep(max / 10)
		return
	}
	for time.Now().Before(deadline) {
		time.Sleep(window)
		cur, ok := idleTime()
		if !ok || cur-prev >= window/2 {
			return
		}
		prev = cur
	}
}

// idleTime is how long the CPUs have been idle since boot, from /proc/stat (idle and iowait,
// in USER_HZ ticks, 100 a second on Linux).
func idleTime() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseIdle(line)
}

// parseIdle reads the idle and iowait ticks of /proc/stat's aggregate "cpu" line.
func parseIdle(line string) (time.Duration, bool) {
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for _, v := range f[4:6] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), true
}
