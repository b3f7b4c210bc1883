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
	o := &Options{IO: io, ProjectDir: (&cmdutil.Factory{Dir: t.TempDir()}).ProjectDir, Kernel: k.Vmlinuz}
	if err := doctorRun(context.Background(), o); err != nil {
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
	o = &Options{IO: io, ProjectDir: (&cmdutil.Factory{Dir: t.TempDir()}).ProjectDir, JSON: true, Kernel: k.Vmlinuz}
	if err := doctorRun(context.Background(), o); err != nil {
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

func TestNewCmdDoctor(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	var got *Options
	cmd := NewCmdDoctor(&cmdutil.Factory{IO: ios, JSON: true}, func(o *Options) error { got = o; return nil })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil || got == nil || got.Backend != "auto" || got.Accel != "auto" || got.Net != "" || !got.JSON {
		t.Fatalf("doctor: %v %+v; want --backend and --accel auto, --net unset (the project's)", err, got)
	}
	cmd.SetArgs([]string{"--net", "tap:tap0", "--backend", "firecracker", "--accel", "kvm", "--kernel", "/k"})
	if err := cmd.Execute(); err != nil || got.Net != "tap:tap0" || got.Backend != "firecracker" || got.Accel != "kvm" || got.Kernel != "/k" {
		t.Fatalf("doctor --net tap:tap0 --backend firecracker --accel kvm --kernel /k: %v %+v", err, got)
	}
}

// Bad --net, --backend or --accel values are usage errors, found before any check runs.
func TestDoctorUsage(t *testing.T) {
	for _, o := range []Options{{Net: "bridge"}, {Backend: "xen", Accel: "auto"}, {Backend: "auto", Accel: "hvf"}} {
		ios, _, out, _ := iostreams.Test()
		o.IO, o.ProjectDir = ios, (&cmdutil.Factory{Dir: t.TempDir()}).ProjectDir
		if o.Backend == "" {
			o.Backend, o.Accel = "auto", "auto"
		}
		if err := doctorRun(context.Background(), &o); cmdutil.ExitCode(err) != 2 || out.Len() != 0 {
			t.Errorf("doctor %+v: %v, stdout %q; want a usage error and no report", o, err, out)
		}
	}
}
