// Package crashpoint lets the crash tests kill ukernel at a named write step, deterministically
// rather than by timing: with UKERNEL_TEST_CRASH_AT set to a pattern (path.Match syntax) naming
// a step, the process sends itself SIGKILL when it reaches that step. Unset, At does nothing
// but compare with the empty string. The steps are listed in docs/SECURITY.md ("Crash and
// disk-full tests"); test/e2e TestCrashAtEachWriteStep reaches each one.
package crashpoint

import (
	"os"
	"path"
	"syscall"
	"time"
)

// Env is the environment variable naming the step to crash at.
const Env = "UKERNEL_TEST_CRASH_AT"

var pattern = os.Getenv(Env)

// At kills the process with SIGKILL if step matches UKERNEL_TEST_CRASH_AT. A step is called
// where what is written is complete in a temporary place and not yet published (renamed).
func At(step string) {
	if pattern == "" {
		return
	}
	if ok, _ := path.Match(pattern, step); !ok {
		return
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	for { // SIGKILL cannot be caught: never go on writing
		time.Sleep(time.Second)
	}
}
