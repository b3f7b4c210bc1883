package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/image"
)

// TestPackReproducible: the same project packed from clean copies in different directories,
// at different times and umasks, gives the same image, and the reference tools accept it.
func TestPackReproducible(t *testing.T) {
	skipShort(t)
	var sums []string
	var imgs []string
	for i, umask := range []string{"022", "077"} {
		dir := newProject(t, "repro-worker", "--lang", "python", "--template", "worker")
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // different wall-clock seconds
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		cmd := exec.CommandContext(ctx, "sh", "-c", "umask "+umask+" && exec \"$0\" -C \"$1\" --json pack", ukernelBin(t), dir)
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("pack (umask %s): %v\n%s", umask, err, stderrOf(err))
		}
		var r struct {
			Image  string `json:"image"`
			SHA256 string `json:"sha256"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("pack --json: %v: %s", err, out)
		}
		sums = append(sums, r.SHA256)
		imgs = append(imgs, filepath.Join(dir, r.Image))
	}
	if sums[0] != sums[1] {
		t.Errorf("images differ: %s vs %s", sums[0], sums[1])
		if _, err := exec.LookPath("diffoscope"); err == nil {
			out, _ := exec.Command("diffoscope", "--text", "-", imgs[0], imgs[1]).CombinedOutput()
			t.Logf("diffoscope:\n%.4000s", out)
		}
	}
	if _, err := exec.LookPath("diffoscope"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "diffoscope", "--no-progress", imgs[0], imgs[1]).CombinedOutput(); err != nil {
			t.Errorf("diffoscope found differences: %v\n%.4000s", err, out)
		}
	}
	out, err := exec.Command("sgdisk", "-v", imgs[0]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	r := mustUK(t, filepath.Dir(filepath.Dir(imgs[0])), time.Minute, "--json", "inspect", imgs[0])
	var insp struct {
		Verified bool `json:"verified"`
		Manifest struct {
			ABI     string                   `json:"abi"`
			Adapter struct{ Runtime string } `json:"adapter"`
			Lock    struct{ Packages int }   `json:"lock"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &insp); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
	}
	if !insp.Verified || insp.Manifest.ABI != "0.3.0" || insp.Manifest.Adapter.Runtime != "python-3.11" || insp.Manifest.Lock.Packages < 5 {
		t.Errorf("inspect: %+v", insp)
	}
	// The modules a boot needs are byte-compiled for the guest's Python, as unchecked hash-based
	// pycs (PEP 552 flags 0b01) that record no host path.
	proj := filepath.Dir(filepath.Dir(imgs[0]))
	pyc, err := os.ReadFile(filepath.Join(proj, "build/rootfs/usr/lib/python3.11/encodings/__pycache__/__init__.cpython-311.pyc"))
	if err != nil {
		t.Errorf("no byte-compiled encodings package: %v", err)
	} else if len(pyc) < 16 || pyc[4] != 1 {
		t.Errorf("encodings pyc is not an unchecked hash-based pyc (flags %v)", pyc[4:8])
	} else if bytes.Contains(pyc, []byte(proj)) {
		t.Errorf("the pyc records the build directory %s", proj)
	}
	// A no-op rebuild is a cache hit.
	again := mustUK(t, filepath.Dir(filepath.Dir(imgs[0])), time.Minute, "pack")
	if again.stderr != "Image created: dist/repro-worker.img (up to date: no input changed)\n" {
		t.Errorf("second pack was not a cache hit said in one line:\n%s", again.stderr)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestWorkerImageBootsInQEMU boots a packed python worker image with a plain QEMU command
// line (no `ukernel run`) and waits for its first tick on the console.
func TestWorkerImageBootsInQEMU(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "boot-worker", "--lang", "python", "--template", "worker")
	mustUK(t, dir, 15*time.Minute, "pack")
	imgPath := filepath.Join(dir, "dist", "boot-worker.img")
	im, err := image.Open(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	kernel, initrd, err := im.ExtractBoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", im.Manifest().Kernel.Cmdline,
		"-serial", "stdio",
		"-drive", "id=root,file="+imgPath+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device",
		"-chardev", "file,id=ev,path="+filepath.Join(t.TempDir(), "events.jsonl"),
		"-device", "virtserialport,chardev=ev,name=ukernel.events")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var console strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		console.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "tick") {
			return
		}
	}
	t.Fatalf("no tick on the console before QEMU ended or the deadline (%v):\n%s", ctx.Err(), console.String())
}

func TestMain(m *testing.M) {
	// Guests of this test process are listed in their own state directory, apart from any
	// the developer has running.
	state, err := os.MkdirTemp("", "ukernel-e2e-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_RUNTIME_DIR", state)
	code := m.Run()
	os.RemoveAll(state)
	if crashDir != "" {
		os.RemoveAll(crashDir)
	}
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
