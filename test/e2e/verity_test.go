package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/image"
)

// TestReadonlyImageVerity: `pack --readonly` gives an image whose root the guest verifies with
// dm-verity. It boots and runs through `ukernel run`; with one flipped byte in the root
// partition, `inspect` and `run` name the damaged root partition, and a VMM that boots it
// anyway (plain QEMU, no host check) sees the guest refuse it: a verity error on the console,
// an error event and power-off with 125, well before the deadline.
func TestReadonlyImageVerity(t *testing.T) {
	skipShort(t)
	dir := newProject(t, "verity-min", "--lang", "python", "--template", "minimal")
	writeFile(t, filepath.Join(dir, "src", "main.py"), "print('Hello from verity-min', flush=True)\n"+printRootReadahead)
	mustUK(t, dir, 15*time.Minute, "pack", "--readonly", "--image", "dist/ro.img")
	img := filepath.Join(dir, "dist", "ro.img")

	r := mustUK(t, dir, time.Minute, "--json", "inspect", img)
	var insp struct {
		Verified bool         `json:"verified"`
		Manifest abi.Manifest `json:"manifest"`
		Report   image.Report `json:"verification"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &insp); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
	}
	v := insp.Manifest.Root.Verity
	if !insp.Verified || v == nil || len(v.RootHash) != 64 || !strings.Contains(insp.Manifest.Kernel.Cmdline, abi.VerityCmdlineKey+"="+v.RootHash) {
		t.Fatalf("inspect: verified %v, verity %+v, cmdline %q", insp.Verified, v, insp.Manifest.Kernel.Cmdline)
	}
	checked := false
	for _, c := range insp.Report.Checks {
		checked = checked || (c.Part == image.PartVerity && c.OK)
	}
	if !checked {
		t.Errorf("inspect made no passing %q check: %+v", image.PartVerity, insp.Report.Checks)
	}

	run := uk(t, dir, 3*time.Minute, "run", "--image", img, "--accel", "tcg")
	if run.code != 0 || !strings.Contains(run.stdout+run.stderr, "Hello from verity-min") {
		t.Fatalf("run of the read-only image: exit %d\nstdout:\n%s\nstderr:\n%s", run.code, run.stdout, run.stderr)
	}
	if !strings.Contains(run.stdout, "root device: /dev/dm-") {
		t.Errorf("the read-only image's root is not on a dm-verity device:\n%s", run.stdout)
	}
	checkRootReadahead(t, run.stdout)

	im, err := image.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	rootOff := rootOffset(t, im)
	im.Close()
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		off  int64 // in the root partition
	}{
		{"erofs superblock", 1024 + 40},
		{"file data", insp.Manifest.Root.Size * 3 / 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.img")
			b := append([]byte(nil), good...)
			b[rootOff+c.off] ^= 0x01
			if err := os.WriteFile(bad, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if r := uk(t, dir, time.Minute, "inspect", bad); r.code != 1 || !strings.Contains(r.stdout, "root partition: ") {
				t.Errorf("inspect of the flipped image: exit %d, root partition not named:\n%s%s", r.code, r.stdout, r.stderr)
			}
			if r := uk(t, dir, time.Minute, "run", "--image", bad, "--accel", "tcg"); r.code == 0 || !strings.Contains(r.stderr, "root partition: ") {
				t.Errorf("run of the flipped image: exit %d, want a refusal naming the root partition:\n%s%s", r.code, r.stdout, r.stderr)
			}
			console, events := bootDirect(t, bad, 90*time.Second)
			if !strings.Contains(console, "dm-verity: the root filesystem does not match its root hash "+v.RootHash) {
				t.Errorf("no verity error on the console:\n%s", console)
			}
			for _, l := range strings.Split(console, "\n") {
				if strings.Contains(l, "verity") {
					t.Log(strings.TrimSpace(l))
				}
			}
			if strings.Contains(console, "Hello from") {
				t.Errorf("the workload ran on a modified root:\n%s", console)
			}
			var sawError, sawPowerOff bool
			for _, e := range events {
				switch e.Type {
				case abi.EventError:
					sawError = strings.Contains(e.Message, "dm-verity")
				case abi.EventPowerOff:
					sawPowerOff = e.Code != nil && *e.Code == 125
				}
			}
			if !sawError || !sawPowerOff {
				t.Errorf("events: want a dm-verity error and power-off 125, got %+v", events)
			}
		})
	}
}

// rootOffset returns the byte offset of the root partition, read with sgdisk.
func rootOffset(t *testing.T, im *image.Image) int64 {
	t.Helper()
	out, err := exec.Command("sgdisk", "-i", "2", im.Path()).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2: %v\n%s", err, out)
	}
	var first int64
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(l, "First sector: "); ok {
			n, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatalf("sgdisk first sector %q: %v", rest, err)
			}
			first = n
		}
		if strings.HasPrefix(l, "Partition name: ") && !strings.Contains(l, abi.RootLabel) {
			t.Fatalf("partition 2 is not %s: %s", abi.RootLabel, l)
		}
	}
	return first * 512
}

// bootDirect boots an image with plain QEMU (no host-side verification), waits for the guest
// to power off by itself within timeout and returns the console and the events.
func bootDirect(t *testing.T, img string, timeout time.Duration) (string, []abi.Event) {
	t.Helper()
	im, err := image.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	tmp := t.TempDir()
	kernel, initrd, err := im.ExtractBoot(tmp)
	if err != nil {
		t.Fatal(err)
	}
	evPath := filepath.Join(tmp, "events.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-M", "microvm,pit=on,pic=on,rtc=on", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", im.Manifest().Kernel.Cmdline,
		"-serial", "stdio",
		"-drive", "id=root,file="+img+",format=raw,if=none,readonly=on",
		"-device", "virtio-blk-device,drive=root",
		"-device", "virtio-serial-device",
		"-chardev", "file,id=ev,path="+evPath,
		"-device", "virtserialport,chardev=ev,name="+abi.EventsPort).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the guest did not power off within %v (a hang):\n%s", timeout, out)
	}
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, out)
	}
	t.Logf("guest stopped after %v", time.Since(start).Round(time.Millisecond))
	f, err := os.Open(evPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []abi.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e abi.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			events = append(events, e)
		}
	}
	return string(out), events
}
