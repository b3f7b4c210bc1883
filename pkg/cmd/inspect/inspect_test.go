package inspect

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// packImage writes a small image under dir/dist with fake kernel and init files.
func packImage(t *testing.T, dir string) string {
	t.Helper()
	testenv.RequireTools(t, "mkfs.erofs")
	files := map[string]string{
		"in/vmlinuz":       strings.Repeat("k", 100<<10),
		"in/init":          strings.Repeat("i", 10<<10),
		"root/app/main.py": "print('tick')\n",
		"root/etc/passwd":  "root:x:0:0:root:/root:/bin/sh\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := image.Pack(ctx, image.Input{
		Manifest: abi.Manifest{
			Name:     "example-worker",
			Adapter:  abi.Adapter{Name: "python", Runtime: "python-3.11"},
			Entry:    []string{"/usr/bin/python3", "/app/main.py"},
			Services: []abi.Service{{Name: "app", Command: []string{"python3", "/app/main.py"}, Restart: "on-failure"}},
			Health:   []abi.HealthCheck{{Service: "app", HTTP: "http://127.0.0.1:8080/", IntervalS: 5, TimeoutS: 3}},
			Run:      abi.RunDefaults{VCPU: 1, MemoryMB: 256, Net: "user", Publish: []string{"8080:8080"}},
			Kernel:   abi.Kernel{Package: "linux-image-6.1.0-56-cloud-amd64", Version: "6.1.192-2", Release: "6.1.0-56-cloud-amd64"},
			Lock:     abi.LockRef{Digest: "sha256:" + strings.Repeat("ab", 32), Packages: 42},
		},
		KernelPath:      filepath.Join(dir, "in/vmlinuz"),
		ModulesDir:      filepath.Join(dir, "in"),
		InitPath:        filepath.Join(dir, "in/init"),
		RootDir:         filepath.Join(dir, "root"),
		Output:          filepath.Join(dir, "dist/example-worker.img"),
		SourceDateEpoch: 1700000000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return "dist/example-worker.img"
}

func runInspect(t *testing.T, dir string, json bool, args ...string) (string, string, error) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	f := &cmdutil.Factory{IO: ios, Dir: dir, JSON: json}
	cmd := NewCmdInspect(f, nil)
	cmd.SetArgs(args)
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), errOut.String(), err
}

func TestInspectText(t *testing.T) {
	dir := t.TempDir()
	img := packImage(t, dir)
	out, _, err := runInspect(t, dir, false, img)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	wantStart := "Image: dist/example-worker.img\nABI: 0.3.0\nAdapter: python-3.11\nSize: "
	if !strings.HasPrefix(out, wantStart) {
		t.Fatalf("output starts:\n%s\nwant:\n%s", out, wantStart)
	}
	for _, want := range []string{
		"\nSHA256: ",
		"\nLock: sha256:abab",
		"(42 packages)",
		"\nKernel: linux-image-6.1.0-56-cloud-amd64 6.1.192-2 (6.1.0-56-cloud-amd64)\n",
		"\nEntry: /usr/bin/python3 /app/main.py\n",
		"\nService: app: python3 /app/main.py (restart on-failure)\n",
		"\nHealth: app: http://127.0.0.1:8080/ every 5s, timeout 3s\n",
		"\nRun: vcpu 1, memory 256 MB, net user, publish 8080:8080\n",
		"\n  kernel        102 kB  sha256:",
		"\n  root ",
		"\nVerified: ok (",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestInspectJSONAndDamage(t *testing.T) {
	dir := t.TempDir()
	img := packImage(t, dir)
	out, _, err := runInspect(t, dir, true, img)
	if err != nil {
		t.Fatal(err)
	}
	var o Output
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if !o.Verified || o.Manifest.Name != "example-worker" || len(o.SHA256) != 64 || len(o.Report.Checks) < 8 {
		t.Fatalf("--json: %+v", o)
	}

	// Flip a byte in the root partition: exit 1, the part named, what could be read still shown.
	p := filepath.Join(dir, img)
	b, _ := os.ReadFile(p)
	b[len(b)-(1<<20)-(1<<20)+100] ^= 1 // inside the last MiB of the root partition (its padding)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runInspect(t, dir, false, img)
	if cmdutil.ExitCode(err) != 1 || !strings.Contains(err.Error(), "root partition: ") {
		t.Fatalf("damaged image: exit %d, err %v", cmdutil.ExitCode(err), err)
	}
	if !strings.Contains(out, "Adapter: python-3.11") || !strings.Contains(out, "Verified: FAILED\n  root partition: ") {
		t.Fatalf("damaged image output:\n%s", out)
	}

	if _, _, err := runInspect(t, dir, false); cmdutil.ExitCode(err) != 2 {
		t.Fatalf("no argument: %v", err)
	}
	if _, _, err := runInspect(t, dir, false, "missing.img"); err == nil || !strings.Contains(err.Error(), "missing.img") {
		t.Fatalf("missing image: %v", err)
	}
}

func TestModuleSummary(t *testing.T) {
	m := abi.Manifest{Modules: []string{"a.ko", "b.ko", "c.ko", "d.ko"}}
	if got := moduleSummary(m); got != "4" {
		t.Errorf("without groups: %q", got)
	}
	m.ModuleGroups = map[string][]string{"vsock": {"c.ko", "d.ko"}, "net": {"b.ko"}}
	if got, want := moduleSummary(m), "4 (1 at every boot; on demand: net 1, vsock 2)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	m.ModuleGroups["serial"] = []string{"c.ko"} // shared with vsock
	if got, want := moduleSummary(m), "4 (1 at every boot; on demand: net 1, serial 1, vsock 2)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// The image argument is taken as typed (the project directory is applied when it is opened);
// anything but one argument is a usage error.
func TestNewCmdInspect(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdInspect(&cmdutil.Factory{IO: ios, JSON: true}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"dist/a.img"})
	if err := cmd.Execute(); err != nil || got == nil || got.Image != "dist/a.img" || !got.JSON {
		t.Fatalf("inspect dist/a.img: %v %+v", err, got)
	}
	for _, args := range [][]string{nil, {"a.img", "b.img"}} {
		cmd := NewCmdInspect(&cmdutil.Factory{IO: ios}, func(*Options) error { t.Error("ran"); return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		if err := cmd.Execute(); cmdutil.ExitCode(err) != 2 {
			t.Errorf("inspect %q: %v, want a usage error", args, err)
		}
	}
}

// TestInspectTextNeutralisedOnTerminal: an image's manifest (a pulled image's is anyone's)
// reaches a terminal with its control sequences escaped; a pipe gets it as it is.
func TestInspectTextNeutralisedOnTerminal(t *testing.T) {
	o := Output{Image: "x.img", Manifest: abi.Manifest{Name: "\x1b]0;owned\x07w", Entry: []string{"\x1b[2J/app"},
		Kernel: abi.Kernel{Cmdline: "console=\u009b31m"}}}
	var term, pipe strings.Builder
	if err := writeText(&term, true, o); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(term.String(), "\x1b\x07\u009b") || !strings.Contains(term.String(), `Name: \x1b]0;owned\x07w`) {
		t.Errorf("on a terminal:\n%q", term.String())
	}
	writeText(&pipe, false, o)
	if !strings.Contains(pipe.String(), "Name: \x1b]0;owned\x07w\n") {
		t.Errorf("on a pipe:\n%q", pipe.String())
	}
}
