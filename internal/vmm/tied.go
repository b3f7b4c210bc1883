package vmm

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// StartTied starts cmd, a VMM, so that it gets SIGKILL when the ukernel process that started it
// dies, however it dies (kill -9 included): a foreground run's VMM dies with run, a detached
// guest's with its monitor, and a VMM whose starter died before recording it never runs on
// unmanaged. It returns cmd's Wait, to be called once.
//
// The kernel sends the parent-death signal when the thread that forked the child exits, not the
// process: a Go thread can exit (one locked by a goroutine that ends), so the fork happens on a
// thread locked by a goroutine that stays until the VMM is gone.
func StartTied(cmd *exec.Cmd) (wait func() error, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine, after the VMM
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return func() error { return <-exited }, nil
}

// Env is QEMU's environment: only what it may use from ukernel's. Nothing else of the user's
// (a token, a secret given as `run --secret NAME`) is readable in its /proc/PID/environ for as
// long as the guest runs.
func Env() []string {
	var env []string
	for _, k := range []string{"PATH", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
