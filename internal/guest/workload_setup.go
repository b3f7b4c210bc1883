package guest

import (
	"fmt"
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

// setupSecrets writes the run-time secrets into the root's /run/secrets (a tmpfs). Only names
// reach the console, never values.
func (in *pid1) setupSecrets() error {
	readers, err := SecretReaders(in.manifest)
	if err != nil {
		return err
	}
	undeclared, missing, err := WriteSecrets(filepath.Join(in.layout.Root, abi.SecretsDir), in.cfg.Secrets, readers)
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
