package launch

import (
	"fmt"
	"os"
	"syscall"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// writeConfigDrive writes cfg as a config drive (abi.EncodeConfigDrive) at path. The file is
// 0600: it carries the run-time env and secrets.
func writeConfigDrive(path string, cfg *abi.BootConfig) error {
	data, err := abi.EncodeConfigDrive(cfg)
	if err != nil {
		return err
	}
	// A new file or none: a file or link already there (planted, or left by a killed run that
	// the store's cleaning did not reach) is never written through.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("config drive: %w (remove %s if no ukernel run uses it)", err, tmp)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("config drive %s: %w", path, err)
	}
	return nil
}
