package guest

import (
	"os"
	"strconv"
	"strings"
)

// peakRSSKB is the init's own peak resident set (VmHWM) in KiB, 0 when unknown; the host's
// benchmarks report it.
func peakRSSKB() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
