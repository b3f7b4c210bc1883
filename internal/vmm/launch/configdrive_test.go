package launch

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/guest"
)

func TestConfigDriveRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "g.config")
	cfg := &abi.BootConfig{ABI: abi.Version, RunID: "r1", Hostname: "g", Env: map[string]string{"SECRET": "s3cr3t"},
		Network: abi.Network{Mode: "user", Address: "10.0.2.15/24"}}
	if err := writeConfigDrive(p, cfg); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size()%4096 != 0 {
		t.Errorf("config drive mode %v size %d, want 0600 and a multiple of 4096", fi.Mode().Perm(), fi.Size())
	}
	f, _ := os.Open(p)
	defer f.Close()
	got, err := guest.ReadConfig(f) // the guest's own reader
	if err != nil {
		t.Fatal(err)
	}
	if got.Env["SECRET"] != "s3cr3t" || got.RunID != "r1" || got.Network.Address != "10.0.2.15/24" {
		t.Errorf("guest read %+v", got)
	}
}

// TestConfigDriveRefusesPlantedLink: the config drive is a new 0600 file: links planted at its
// path and at a temporary name of the old scheme are never written through (their target keeps
// its content), the path's link is replaced.
func TestConfigDriveRefusesPlantedLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	drive := filepath.Join(dir, "web.config")
	for _, p := range []string{drive, drive + ".tmp"} {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &abi.BootConfig{ABI: abi.Version, Secrets: map[string][]byte{"K": []byte("s3cret")}}
	if err := writeConfigDrive(drive, cfg); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
	fi, err := os.Lstat(drive)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config drive: %v %v, want a regular 0600 file", fi, err)
	}
	f, err := os.Open(drive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, err := guest.ReadConfig(f); err != nil || string(got.Secrets["K"]) != "s3cret" {
		t.Errorf("guest read %+v, %v", got, err)
	}
}

// FuzzConfigDrive: the guest's reader of the config drive accepts a drive or refuses it without
// quoting it (it carries secrets), and what it accepts, written again by the host's writer,
// reads back the same.
func FuzzConfigDrive(f *testing.F) {
	cfg := &abi.BootConfig{ABI: abi.Version, Env: map[string]string{"A": "1"}, Secrets: map[string][]byte{"token": []byte("hunter2-secret")}}
	dir := f.TempDir()
	if err := writeConfigDrive(dir+"/seed", cfg); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(dir + "/seed")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(append([]byte(abi.ConfigMagic), 3, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' '))
	f.Add(append([]byte(abi.ConfigMagic), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := guest.ReadConfig(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error quotes a secret: %v", err)
			}
			return
		}
		p := t.TempDir() + "/config"
		if err := writeConfigDrive(p, got); err != nil {
			t.Fatalf("accepted config does not write: %v", err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		again, err := guest.ReadConfig(fh)
		if err != nil {
			t.Fatalf("written again, the drive does not read: %v", err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, got)
		}
	})
}
