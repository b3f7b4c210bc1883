package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// setupData mounts the data volume when the image has one. The host attaches it whenever the
// manifest asks for it, so a missing disk is an error, not a silent run without persistence.
func (in *pid1) setupData() error {
	if in.manifest.Data.DiskMB <= 0 {
		return nil
	}
	var dev string
	err := Poll(DeviceTimeout, 20*time.Millisecond, func() (string, error) {
		devs, err := BlockDevices("/sys")
		if err != nil {
			return "", err
		}
		if p, ok := FindDataDisk(devs, "/dev", in.rootPart.Parent); ok {
			dev = p
			return "", nil
		}
		return fmt.Sprintf("a disk holding ext4 labelled %q (block devices: %s)", abi.DataLabel, devNames(devs)), nil
	})
	if err != nil {
		return fmt.Errorf("the image has a data volume ([data] disk_mb = %d) but none was attached: %w", in.manifest.Data.DiskMB, err)
	}
	name, shared := DataOwner(in.manifest)
	owner, err := LookupUser(in.manifest.Users, name)
	if err != nil {
		return err
	}
	if err := MountData(in.layout.Root, dev, owner, shared); err != nil {
		return err
	}
	in.dataDir = filepath.Join(in.layout.Root, abi.DataDir)
	if blocks, err := GrowData(dev, in.dataDir); err != nil {
		// The volume stays usable at its old size.
		fmt.Fprintf(in.console, "ukernel-init: warning: data volume not grown to [data] disk_mb = %d: %v\n", in.manifest.Data.DiskMB, err)
	} else if blocks > 0 {
		in.log.Debug("data volume grown", "blocks", blocks)
	}
	return nil
}

// YamaPtraceScope is where the kernel's Yama LSM takes its ptrace restriction.
const YamaPtraceScope = "/proc/sys/kernel/yama/ptrace_scope"

// setupSecrets writes the run-time secrets into the root's /run/secrets (a tmpfs), each readable
// only by the processes that declare it (PlanSecrets). Only names reach the console, never
// values.
func (in *pid1) setupSecrets() error {
	plan, err := PlanSecrets(in.manifest)
	if err != nil {
		return err
	}
	in.secrets = plan
	if len(plan.Readers) > 0 {
		// Groups keep a process of the same user from opening another's secret, even through
		// /proc/PID/root or /proc/PID/fd; reading it out of the other's memory (ptrace,
		// /proc/PID/mem) needs only the same uid, unless Yama restricts ptrace to descendants.
		if err := os.WriteFile(YamaPtraceScope, []byte("1\n"), 0); err != nil {
			in.log.Warn("ptrace not restricted: a process can read the memory, and so the secrets, of another of its user", "err", err)
		}
	}
	undeclared, missing, err := WriteSecrets(filepath.Join(in.layout.Root, abi.SecretsDir), in.cfg.Secrets, plan.Readers)
	if err != nil {
		return err
	}
	if len(undeclared) > 0 {
		in.log.Warn("secrets given but declared by no process; not written", "names", strings.Join(undeclared, ","))
	}
	if len(missing) > 0 {
		in.log.Warn("secrets declared but not given (ukernel run --secret NAME)", "names", strings.Join(missing, ","))
	}
	// The boot config stays in memory for the run; drop the values init no longer needs.
	in.cfg.Secrets = nil
	return nil
}
