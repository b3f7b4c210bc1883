package guest

import (
	"sort"
	"strings"
	"syscall"
)

// BasePath is the PATH every workload process starts with.
const BasePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// MergeEnv builds a process environment: the base variables, then the image's (static) ones, then
// the run-time ones; a later layer wins. Keys of each layer are applied in sorted order, so the
// result is deterministic.
func MergeEnv(home string, layers ...map[string]string) []string {
	vals := map[string]string{"PATH": BasePath, "HOME": home, "LANG": "C.UTF-8"}
	order := []string{"PATH", "HOME", "LANG"}
	for _, layer := range layers {
		keys := make([]string, 0, len(layer))
		for k := range layer {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				continue // not representable in an environment
			}
			if _, seen := vals[k]; !seen {
				order = append(order, k)
			}
			vals[k] = layer[k]
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vals[k])
	}
	return env
}

// ExitCode maps a wait status to a shell-style exit code: the status of a normal exit, or
// 128+signal for a process killed by a signal.
func ExitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	default:
		return 125
	}
}
