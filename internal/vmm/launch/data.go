package launch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// DataVolumeFile is the project's persistent data volume, beside its state: outside the image,
// build/ and dist/, so it outlives rebuilds.
const DataVolumeFile = "data.img"

// mkfsTimeout bounds making a new volume's filesystem.
const mkfsTimeout = 2 * time.Minute

// DataVolume returns the project's data volume of sizeMB MiB, creating it on first use: a sparse
// file holding an empty ext4 filesystem labelled abi.DataLabel, owned by root (the guest hands
// it to the workload's user). An existing volume keeps its data: a smaller one is extended to
// sizeMB (the guest grows its filesystem online when it mounts it), a larger one is never
// shrunk.
func DataVolume(ctx context.Context, projectDir string, sizeMB int) (string, error) {
	path := filepath.Join(projectDir, project.StateDir, DataVolumeFile)
	if fi, err := os.Stat(path); err == nil {
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("data volume %s is not a regular file", path)
		}
		if want := int64(sizeMB) << 20; fi.Size() < want {
			if err := os.Truncate(path, want); err != nil {
				return "", fmt.Errorf("data volume %s: growing it to %d MiB: %w", path, sizeMB, err)
			}
		}
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("data volume: %w", err)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return "", errors.New("mkfs.ext4 not found: install e2fsprogs (needed once, to create the data volume)")
	}
	ctx, cancel := context.WithTimeout(ctx, mkfsTimeout)
	defer cancel()
	err = atomicfile.Write(path, 0o600, func(f *os.File) error {
		if err := f.Truncate(int64(sizeMB) << 20); err != nil {
			return err
		}
		out, err := exec.CommandContext(ctx, mkfs, "-F", "-q", "-L", abi.DataLabel,
			"-E", "root_owner=0:0", "-m", "0", f.Name()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mkfs.ext4 for the data volume (%d MiB): %v: %s", sizeMB, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("data volume: %w", err)
	}
	return path, nil
}

// checkSecrets refuses secrets that no process of the image declares: a typo would otherwise
// leave a service without its secret, silently.
func checkSecrets(m abi.Manifest, secrets map[string][]byte) error {
	declared := map[string]bool{}
	for _, n := range m.Secrets {
		declared[n] = true
	}
	for _, s := range m.Services {
		for _, n := range s.Secrets {
			declared[n] = true
		}
	}
	for name := range secrets {
		if !declared[name] {
			var known []string
			for n := range declared {
				known = append(known, n)
			}
			if len(known) == 0 {
				known = []string{"none"}
			}
			return fmt.Errorf("--secret %s: no process of image %q declares it (secrets = [...] under [project] or [services.NAME]; declared: %s)", name, m.Name, strings.Join(slices.Sorted(slices.Values(known)), ", "))
		}
	}
	return nil
}

// dataDisks is the data volume drive of a run, when the image has one ([data] disk_mb).
func dataDisks(ctx context.Context, projectDir string, m abi.Manifest) ([]vmm.Disk, error) {
	if m.Data.DiskMB <= 0 {
		return nil, nil
	}
	if projectDir == "" {
		return nil, fmt.Errorf("image %q has a data volume ([data] disk_mb = %d): run it from its project (-C DIR), where the volume is kept", m.Name, m.Data.DiskMB)
	}
	path, err := DataVolume(ctx, projectDir, m.Data.DiskMB)
	if err != nil {
		return nil, err
	}
	return []vmm.Disk{{ID: "data", Path: path}}, nil
}
