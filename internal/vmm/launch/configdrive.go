package launch

import (
	"fmt"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// writeConfigDrive writes cfg as a config drive (abi.EncodeConfigDrive) at path. The file is
// 0600: it carries the run-time env and secrets.
func writeConfigDrive(path string, cfg *abi.BootConfig) error {
	data, err := abi.EncodeConfigDrive(cfg)
	if err != nil {
		return err
	}
	// A new file, 0600 from its creation, replacing what is at path: a file or link there
	// (planted, or left by a killed run that the store's cleaning did not reach) is never
	// written through.
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("config drive: %w", err)
	}
	return nil
}
