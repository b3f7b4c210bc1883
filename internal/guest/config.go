package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// MaxConfigSize bounds the config drive's JSON; secrets live there, so allow some room, but a
// corrupt length must not make init allocate the world.
const MaxConfigSize = 16 << 20

// ErrNoConfig means the device does not start with abi.ConfigMagic: it is not a config drive.
var ErrNoConfig = errors.New("not a config drive")

// ReadConfig decodes a config drive: abi.ConfigMagic, an 8-byte little-endian length, then that
// many bytes of JSON (abi.BootConfig). It checks the ABI version. Errors never quote the JSON:
// it carries the run-time environment and secrets.
func ReadConfig(r io.Reader) (*abi.BootConfig, error) {
	hdr := make([]byte, len(abi.ConfigMagic)+8)
	if _, err := io.ReadFull(r, hdr); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrNoConfig
		}
		return nil, fmt.Errorf("read config header: %w", err)
	}
	if !bytes.Equal(hdr[:len(abi.ConfigMagic)], []byte(abi.ConfigMagic)) {
		return nil, ErrNoConfig
	}
	n := binary.LittleEndian.Uint64(hdr[len(abi.ConfigMagic):])
	if n == 0 || n > MaxConfigSize {
		return nil, fmt.Errorf("config drive length %d out of range (1..%d bytes)", n, MaxConfigSize)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("config drive truncated: header says %d bytes of JSON: %w", n, err)
	}
	cfg, err := abi.DecodeBootConfig(body)
	if err != nil {
		// A DecodeError names the field (with env and secret names as keys) and the offset,
		// never a value: the boot config carries secrets.
		var de *abi.DecodeError
		switch {
		case !errors.As(err, &de):
			return nil, fmt.Errorf("config drive JSON: %w", err)
		case de.Syntax:
			return nil, fmt.Errorf("config drive JSON invalid at byte %d", de.Offset)
		case de.Path == "":
			return nil, fmt.Errorf("config drive JSON does not fit a boot config (%s at byte %d)", de.Msg, de.Offset)
		}
		return nil, fmt.Errorf("config drive JSON: field %q does not fit (%s at byte %d)", de.Path, de.Msg, de.Offset)
	}
	if err := abi.Compatible(cfg.ABI); err != nil {
		return nil, fmt.Errorf("config drive: %w", err)
	}
	return cfg, nil
}

// FindConfig looks for the config drive among the whole disks of devs (except skip, the image's
// own disk), reading device nodes under devRoot. It returns nil, "", nil when there is none.
func FindConfig(devs []BlockDev, devRoot, skip string) (*abi.BootConfig, string, error) {
	for _, d := range devs {
		if !d.Disk || d.Name == skip {
			continue
		}
		path := devRoot + "/" + d.Name
		f, err := os.Open(path)
		if err != nil {
			continue // e.g. an empty loop device
		}
		cfg, err := ReadConfig(f)
		f.Close()
		if errors.Is(err, ErrNoConfig) {
			continue
		}
		if err != nil {
			return nil, path, err
		}
		return cfg, path, nil
	}
	return nil, "", nil
}

// DefaultConfig is the boot config used when the host gave none: the manifest's network mode,
// abi.UserNetwork for user networking.
func DefaultConfig(m *abi.Manifest) *abi.BootConfig {
	cfg := &abi.BootConfig{ABI: abi.Version, Hostname: m.Name, Network: abi.Network{Mode: m.Run.Net}}
	if cfg.Network.Mode == "" || cfg.Network.Mode == string(abi.NetUser) {
		cfg.Network = abi.UserNetwork()
	}
	return cfg
}
