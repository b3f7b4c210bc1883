package doctor

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/testenv"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/hostcheck"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// TestDoctorOnThisHost runs the real checks, KVM probe included, with a fresh cache. On the
// development host /dev/kvm exists but a guest never finishes under it: the output must say so
// and that QEMU with TCG is used. On a host with working KVM it must say KVM is used instead.
func TestDoctorOnThisHost(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	k := testenv.DebianKernel(t)
	io, _, out, _ := iostreams.Test()
	o := &Options{Factory: &cmdutil.Factory{IO: io}, Kernel: k.Vmlinuz}
	if err := runDoctor(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Logf("\n%s", text)
	rep, err := hostcheck.Run(context.Background(), hostcheck.Options{Kernel: k.Vmlinuz})
	if err != nil {
		t.Fatal(err)
	}
	var kvm hostcheck.Check
	for _, c := range rep.Checks {
		if c.Name == "kvm" {
			kvm = c
		}
	}
	if !kvm.Works {
		if !strings.Contains(text, "kvm: ") || !strings.Contains(text, "a guest cannot run under KVM here") && !strings.Contains(text, "/dev/kvm") {
			t.Errorf("doctor does not explain why KVM is unusable:\n%s", text)
		}
		if !strings.Contains(text, "uses: backend qemu (") || !strings.Contains(text, "accelerator tcg (kvm unusable: ") {
			t.Errorf("doctor does not say QEMU/TCG is used:\n%s", text)
		}
	} else if !strings.Contains(text, "accelerator kvm") {
		t.Errorf("KVM works but doctor does not pick it:\n%s", text)
	}
	for _, name := range []string{vmm.QEMUBinary, "firecracker", "tcg", "tap", "cgroup2", "mkfs.erofs", "go"} {
		if !strings.Contains(text, "\n"+name+" ") {
			t.Errorf("no %s line:\n%s", name, text)
		}
	}

	io, _, out, _ = iostreams.Test()
	o = &Options{Factory: &cmdutil.Factory{IO: io, JSON: true}, Kernel: k.Vmlinuz}
	if err := runDoctor(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	// --json reports the choice as choice.backend and choice.accel, the names ps --json uses.
	var got struct {
		Checks []hostcheck.Check               `json:"checks"`
		Choice struct{ Backend, Accel string } `json:"choice"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if got.Choice.Backend != string(rep.Choice.Backend) || got.Choice.Accel != rep.Choice.Accel || len(got.Checks) != len(rep.Checks) {
		t.Fatalf("--json report %+v, want the choice %+v\n%s", got, rep.Choice, out)
	}
}
