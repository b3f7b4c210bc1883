package guest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// freeze stops the workload for a snapshot: every process but init gets SIGSTOP, so none runs
// between the snapshot's restore and the restore message (restore), which continues them once
// the guest is reseeded. The data volume is synced too: its copy then reads as a clean volume.
func (in *pid1) freeze() {
	t := Now()
	unix.Sync()
	// -1: every process init may signal, init itself excepted (kill(2)).
	if err := syscall.Kill(-1, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
		in.log.Warn("freeze: SIGSTOP to the workload", "err", err)
	}
	in.events.Emit(abi.Event{Type: abi.EventFrozen, Time: Now(), Start: t, Duration: Now() - t})
}

// restore makes a guest restored from a snapshot its own before its workload continues: fresh
// entropy with a forced reseed, the host's wall clock, the run's hostname (the kernel's) and
// machine-id, the run's secrets. Each failure is reported on the console and in the event; the
// workload is continued either way (the host, which waits for the event, decides what a failure
// means). /etc/hostname and /etc/hosts are rewritten after the workload continued and the event
// went out: under TCG their writes were the largest part of the handler (docs/PERFORMANCE.md),
// and they hold no secret or entropy, only a name the kernel already answers with.
func (in *pid1) restore(r *abi.Restore) {
	t := Now()
	values := map[string]int64{}
	problems, etc := in.applyRestore(r, values)
	if underFirecracker(kernelCmdline()) {
		// Before the workload continues: its output goes to the new channel.
		if err := in.redialVsock(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if err := syscall.Kill(-1, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
		problems = append(problems, "continue the workload: "+err.Error())
	}
	for _, p := range problems {
		fmt.Fprintf(in.console, "ukernel-init: error: restore: %s\n", p)
	}
	in.events.Emit(abi.Event{Type: abi.EventReseeded, Time: Now(), Start: t, Duration: Now() - t,
		Message: strings.Join(problems, "; "), Values: values})
	if etc != nil {
		if err := etc(); err != nil {
			fmt.Fprintf(in.console, "ukernel-init: error: restore: %s\n", err)
		}
	}
	// The run's events start here: its health is what the checks last found.
	in.healthMu.Lock()
	defer in.healthMu.Unlock()
	for _, h := range in.health {
		h.report()
	}
}

// applyRestore applies r and returns what failed and, when the name changed, the rewrite of
// /etc's name files that is left to do; values gets how far the clock moved (clock_step_ns) and
// how long each step took (its name and _ns), for trace.
func (in *pid1) applyRestore(r *abi.Restore, values map[string]int64) (problems []string, etc func() error) {
	if err := r.Validate(); err != nil {
		return []string{err.Error()}, nil
	}
	step := func(name string, f func() error) {
		t := Now()
		if err := f(); err != nil {
			problems = append(problems, err.Error())
		}
		values[name+"_ns"] = Now() - t
	}
	step("reseed", func() error { return Reseed(r.Entropy) })
	step("clock", func() error {
		moved, err := setClock(r.TimeNS)
		values["clock_step_ns"] = moved
		return err
	})
	step("rename", func() (err error) {
		etc, err = in.rename(r.Hostname, r.MachineID)
		return err
	})
	if len(r.Secrets) > 0 {
		step("secrets", func() error {
			undeclared, _, err := WriteSecrets(filepath.Join(in.layout.Root, abi.SecretsDir), r.Secrets, in.secrets.Readers)
			if len(undeclared) > 0 {
				in.log.Warn("secrets given but declared by no process; not written", "names", strings.Join(undeclared, ","))
			}
			return err
		})
	}
	return problems, etc
}

// Reseed mixes entropy into the kernel's input pool, credited, and forces the CRNG to reseed
// from it at once (otherwise it would only at its next scheduled reseed, up to a minute later).
func Reseed(entropy []byte) error {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseed: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }, bits then bytes.
	info := make([]byte, 8+len(entropy))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(entropy)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(entropy)))
	copy(info[8:], entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("reseed: RNDADDENTROPY: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("reseed: RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// setClock sets the wall clock to the host's and returns by how much it moved.
func setClock(hostNS int64) (int64, error) {
	var before unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &before)
	ts := unix.NsecToTimespec(hostNS)
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return 0, fmt.Errorf("set the clock: %w", err)
	}
	return hostNS - before.Nano(), nil
}

// rename gives the guest a new hostname and, when the image has a machine-id, a new one; etc,
// when the name changed, rewrites /etc/hostname and /etc/hosts for it (see restore).
func (in *pid1) rename(hostname, machineID string) (etc func() error, err error) {
	if hostname != "" && (in.cfg == nil || hostname != in.cfg.Hostname) {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return nil, fmt.Errorf("set hostname: %w", err)
		}
		var dns []string
		if in.cfg != nil {
			in.cfg.Hostname = hostname
			dns = in.cfg.Network.DNS
		}
		files := EtcFiles(hostname, dns)
		etc = func() error {
			for _, name := range []string{"etc/hostname", "etc/hosts"} {
				if err := os.WriteFile(filepath.Join(in.layout.Root, name), []byte(files[name]), 0o644); err != nil {
					return fmt.Errorf("hostname: %w", err)
				}
			}
			return nil
		}
	}
	if machineID != "" {
		path := filepath.Join(in.layout.Root, "etc/machine-id")
		if _, err := os.Stat(path); err == nil {
			if err := os.WriteFile(path, []byte(machineID+"\n"), 0o444); err != nil {
				return etc, fmt.Errorf("machine-id: %w", err)
			}
		}
	}
	return etc, nil
}
