package build

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// busybox-static puts its binary in /bin on Debian 12 and in /usr/bin on Debian 13: both
// become the image's exec tools.
func TestInstallToolsBothLayouts(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	for _, dir := range []string{"bin", "usr/bin"} {
		t.Run(dir, func(t *testing.T) {
			work := t.TempDir()
			pkg := filepath.Join(work, "pkg")
			for p, body := range map[string]string{
				"DEBIAN/control":              "Package: busybox-static\nVersion: 1:1.37.0-6\nArchitecture: amd64\nMaintainer: test <t@example.invalid>\nDescription: test\n",
				filepath.Join(dir, "busybox"): "not really busybox\n",
			} {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(pkg, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(pkg, p), []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			deb := filepath.Join(work, "bb.deb")
			if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", pkg, deb).CombinedOutput(); err != nil {
				t.Fatalf("dpkg-deb: %v\n%s", err, out)
			}
			root := filepath.Join(work, "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			d := Deb{Name: "busybox-static", Version: "1:1.37.0-6", Architecture: "amd64", Path: deb}
			if err := installTools(context.Background(), d, root, filepath.Join(work, "tmp")); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(root, abi.ExecToolsDir, "sh"))
			if err != nil || string(got) != "not really busybox\n" {
				t.Errorf("sh in the tools: %q, %v", got, err)
			}
		})
	}
}
