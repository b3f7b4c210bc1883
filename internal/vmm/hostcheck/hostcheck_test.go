package hostcheck

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/backends"
	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker"
	"github.com/ukernel-dev/ukernel/internal/vmm/kvmprobe"
)

// A QEMU or Firecracker that is on PATH but does not run is reported as not working, and so is
// TCG, which is QEMU.
func TestCheckHostBrokenBinaries(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{vmm.QEMUBinary, firecracker.Binary} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 127\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	r, err := Run(context.Background(), Options{CacheDir: t.TempDir(), Net: abi.Net{Mode: abi.NetNone}})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]Check{}
	for _, c := range r.Checks {
		checks[c.Name] = c
	}
	for _, name := range []string{vmm.QEMUBinary, firecracker.Binary, "tcg"} {
		c := checks[name]
		if !c.Found || c.Works || c.Why == "" || c.Install == "" {
			t.Errorf("%s: %+v; want found, not working, with why and a fix", name, c)
		}
	}
	if checks["kvm"].Works {
		t.Errorf("kvm works without a working QEMU to probe it: %+v", checks["kvm"])
	}
	if r.Choice.Backend != "qemu" || !strings.HasPrefix(r.Choice.BackendReason, "firecracker does not run: ") {
		t.Errorf("backend choice %+v", r.Choice)
	}
}

// Stand-ins for the VMM binaries: each answers --version as the real one does; the QEMU one
// finishes the KVM probe's boot (the probe guest's kernel panic) or fails it.
const (
	qemuKVMWorks = "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'QEMU emulator version 8.2.2'; exit 0; fi\necho 'Kernel panic - not syncing: VFS: Unable to mount root fs'\n"
	qemuKVMFails = "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'QEMU emulator version 8.2.2'; exit 0; fi\necho 'qemu-system-x86_64: failed to initialize kvm: Permission denied' >&2; exit 1\n"
	fcRuns       = "#!/bin/sh\necho 'Firecracker v1.7.0'\n"
	fcBroken     = "#!/bin/sh\nexit 127\n"
)

// TestDoctorAndRunAgree: on the same host, the doctor's report and run's live facts make the
// same choice, for every request. The host is real but for its VMM binaries (stand-ins on PATH);
// KVM is probed through the stand-in QEMU, as run and doctor both do. Before the registry, a
// firecracker on PATH that did not run was passed over by the doctor but picked by run.
func TestDoctorAndRunAgree(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte("a kernel the stand-in QEMU never reads"), 0o644); err != nil {
		t.Fatal(err)
	}
	device := kvmprobe.Device() // "" when /dev/kvm opens: the probe's answer is the stand-in's
	for _, tc := range []struct {
		name, qemu, fc  string // fc: "" for none on PATH
		net             string
		backend, accel  string
		want, wantAccel string // when /dev/kvm opens
		err             string // when /dev/kvm opens
	}{
		{name: "no firecracker", qemu: qemuKVMWorks, net: "user", want: "qemu", wantAccel: "kvm"},
		{name: "no firecracker, no kvm", qemu: qemuKVMFails, net: "user", want: "qemu", wantAccel: "tcg"},
		{name: "firecracker", qemu: qemuKVMWorks, fc: fcRuns, net: "none", want: "firecracker", wantAccel: "kvm"},
		{name: "firecracker, user network", qemu: qemuKVMWorks, fc: fcRuns, net: "user", want: "qemu", wantAccel: "kvm"},
		{name: "firecracker, no kvm", qemu: qemuKVMFails, fc: fcRuns, net: "tap:tap0", want: "qemu", wantAccel: "tcg"},
		{name: "firecracker does not run", qemu: qemuKVMWorks, fc: fcBroken, net: "none", want: "qemu", wantAccel: "kvm"},
		{name: "accel tcg", qemu: qemuKVMWorks, fc: fcRuns, net: "none", accel: "tcg", want: "qemu", wantAccel: "tcg"},
		{name: "backend qemu accel kvm", qemu: qemuKVMFails, fc: fcRuns, net: "none", backend: "qemu", accel: "kvm", want: "qemu", wantAccel: "kvm"},
		{name: "backend firecracker accel tcg", qemu: qemuKVMWorks, fc: fcRuns, net: "none", backend: "firecracker", accel: "tcg", err: "runs only under KVM"},
		{name: "backend firecracker, no kvm", qemu: qemuKVMFails, fc: fcRuns, net: "none", backend: "firecracker", err: "firecracker needs KVM"},
		{name: "backend firecracker missing", qemu: qemuKVMWorks, net: "none", backend: "firecracker", err: "firecracker not found on PATH"},
		{name: "backend firecracker does not run", qemu: qemuKVMWorks, fc: fcBroken, net: "none", backend: "firecracker", err: "firecracker does not run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := t.TempDir()
			write := func(name, script string) {
				if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			write(vmm.QEMUBinary, tc.qemu)
			if tc.fc != "" {
				write(firecracker.Binary, tc.fc)
			}
			t.Setenv("PATH", bin)
			netw, err := abi.ParseNet(tc.net)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			req, err := backends.ParseRequest(tc.backend, tc.accel, netw.Mode)
			if err != nil {
				t.Fatal(err)
			}
			run, runErr := backends.Choose(req, backends.Live(ctx, kvmprobe.Spec{Kernel: kernel, CacheDir: t.TempDir()}))
			rep, err := Run(ctx, Options{CacheDir: t.TempDir(), Kernel: kernel, Net: netw, Backend: tc.backend, Accel: tc.accel})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("run: %+v %v; doctor: %+v %s", run, runErr, rep.Choice, rep.ChoiceError)
			if runErr != nil || rep.ChoiceError != "" {
				if runErr == nil || runErr.Error() != rep.ChoiceError {
					t.Fatalf("run: %+v, %v; doctor: %+v, %s", run, runErr, rep.Choice, rep.ChoiceError)
				}
			} else if run != rep.Choice {
				t.Fatalf("run chose %+v, doctor %+v", run, rep.Choice)
			}
			if device != "" {
				return // KVM does not open here: both agree on that; the rows assume it opens
			}
			switch {
			case tc.err != "":
				if runErr == nil || !strings.Contains(runErr.Error(), tc.err) {
					t.Errorf("run: %+v, %v; want an error containing %q", run, runErr, tc.err)
				}
			case runErr != nil || string(run.Backend) != tc.want || run.Accel != tc.wantAccel:
				t.Errorf("run: %+v, %v; want %s with %s", run, runErr, tc.want, tc.wantAccel)
			}
		})
	}
}
