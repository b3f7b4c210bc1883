package backends

import (
	"errors"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// host is a table row's host: which facts it offers, and how often Choose asked for each.
type host struct {
	fcFound, fcRuns bool
	kvm             vmm.Avail
	kvmErr          error
	asked           map[string]int
}

func (h *host) facts() Facts {
	h.asked = map[string]int{}
	return Facts{
		Found: func(e Entry) bool { h.asked["found "+string(e.Name)]++; return e.Name != "firecracker" || h.fcFound },
		Runs: func(e Entry) vmm.Avail {
			h.asked["runs "+string(e.Name)]++
			if e.Name == "firecracker" && !h.fcRuns {
				return vmm.Avail{Why: "firecracker --version failed: exit status 127"}
			}
			return vmm.Avail{OK: true}
		},
		KVM: func() (vmm.Avail, error) { h.asked["kvm"]++; return h.kvm, h.kvmErr },
	}
}

// TestChoose is the rule of --backend and --accel, row by row; each fact is asked only when the
// answer depends on it (a KVM probe may boot a guest).
func TestChoose(t *testing.T) {
	kvmOK := vmm.Avail{OK: true}
	kvmBad := vmm.Avail{Why: "KVM: /dev/kvm present but a probe guest did not finish in 4s"}
	for _, tc := range []struct {
		name     string
		host     host
		req      Request
		want     vmm.Choice
		err      string
		notAsked []string
	}{
		{name: "no firecracker", host: host{kvm: kvmBad}, req: Request{Net: abi.NetUser},
			want:     vmm.Choice{Backend: "qemu", BackendReason: "firecracker not found on PATH", Accel: "tcg", AccelReason: "kvm unusable: " + kvmBad.Why},
			notAsked: []string{"runs firecracker"}},
		{name: "user network", host: host{fcFound: true, fcRuns: true, kvm: kvmOK}, req: Request{Backend: Auto, Accel: Auto, Net: abi.NetUser},
			want:     vmm.Choice{Backend: "qemu", BackendReason: "firecracker has no user-mode networking; use --net tap:IFACE or --net none", Accel: "kvm"},
			notAsked: []string{"runs firecracker"}},
		{name: "firecracker", host: host{fcFound: true, fcRuns: true, kvm: kvmOK}, req: Request{Net: abi.NetNone},
			want: vmm.Choice{Backend: "firecracker", BackendReason: "found on PATH, KVM works", Accel: "kvm"}},
		{name: "firecracker without kvm", host: host{fcFound: true, fcRuns: true, kvm: kvmBad}, req: Request{Net: abi.NetTap},
			want: vmm.Choice{Backend: "qemu", BackendReason: "firecracker needs KVM: " + kvmBad.Why, Accel: "tcg", AccelReason: "kvm unusable: " + kvmBad.Why}},
		{name: "firecracker does not run", host: host{fcFound: true, kvm: kvmOK}, req: Request{Net: abi.NetNone},
			want:     vmm.Choice{Backend: "qemu", BackendReason: "firecracker does not run: firecracker --version failed: exit status 127", Accel: "kvm"},
			notAsked: []string{}},
		{name: "accel tcg", host: host{fcFound: true, fcRuns: true, kvm: kvmOK}, req: Request{Accel: vmm.AccelTCG, Net: abi.NetNone},
			want:     vmm.Choice{Backend: "qemu", BackendReason: "--accel tcg", Accel: "tcg", AccelReason: "--accel tcg"},
			notAsked: []string{"kvm", "found firecracker"}},
		{name: "backend qemu", host: host{fcFound: true, fcRuns: true, kvm: kvmBad}, req: Request{Backend: "qemu", Net: abi.NetNone},
			want:     vmm.Choice{Backend: "qemu", BackendReason: "--backend qemu", Accel: "tcg", AccelReason: "kvm unusable: " + kvmBad.Why},
			notAsked: []string{"found firecracker", "found qemu", "runs qemu"}},
		{name: "backend qemu accel kvm", host: host{kvm: kvmBad}, req: Request{Backend: "qemu", Accel: vmm.AccelKVM, Net: abi.NetUser},
			want:     vmm.Choice{Backend: "qemu", BackendReason: "--backend qemu", Accel: "kvm", AccelReason: "--accel kvm"},
			notAsked: []string{"kvm"}},
		{name: "backend firecracker", host: host{fcFound: true, fcRuns: true, kvm: kvmOK}, req: Request{Backend: "firecracker", Accel: vmm.AccelKVM, Net: abi.NetTap},
			want: vmm.Choice{Backend: "firecracker", BackendReason: "--backend firecracker", Accel: "kvm"}},
		{name: "backend firecracker accel tcg", host: host{fcFound: true, fcRuns: true, kvm: kvmOK}, req: Request{Backend: "firecracker", Accel: vmm.AccelTCG},
			err: "--backend firecracker runs only under KVM, not --accel tcg"},
		{name: "backend firecracker missing", host: host{kvm: kvmOK}, req: Request{Backend: "firecracker", Net: abi.NetNone},
			err: "--backend firecracker: firecracker not found on PATH: install a Firecracker release binary", notAsked: []string{"kvm"}},
		{name: "backend firecracker user network", host: host{fcFound: true, fcRuns: true, kvm: kvmOK}, req: Request{Backend: "firecracker", Net: abi.NetUser},
			err: "--backend firecracker: firecracker has no user-mode networking; use --net tap:IFACE or --net none"},
		{name: "backend firecracker does not run", host: host{fcFound: true, kvm: kvmOK}, req: Request{Backend: "firecracker", Net: abi.NetNone},
			err: "--backend firecracker: firecracker does not run: "},
		{name: "backend firecracker without kvm", host: host{fcFound: true, fcRuns: true, kvm: kvmBad}, req: Request{Backend: "firecracker", Net: abi.NetNone},
			err: "--backend firecracker: firecracker needs KVM: " + kvmBad.Why},
		{name: "probe error", host: host{kvmErr: errors.New("KVM probe: context canceled")}, req: Request{Net: abi.NetUser},
			err: "KVM probe: context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Choose(tc.req, tc.host.facts())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.err)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tc.want)
			}
			for _, q := range tc.notAsked {
				if tc.host.asked[q] > 0 {
					t.Errorf("asked %q (%d times); the answer did not depend on it", q, tc.host.asked[q])
				}
			}
			for q, n := range tc.host.asked {
				if n > 1 {
					t.Errorf("asked %q %d times", q, n)
				}
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	if r, err := ParseRequest("", "", abi.NetUser); err != nil || !r.auto() || !r.autoAccel() {
		t.Errorf("defaults: %+v, %v", r, err)
	}
	if _, err := ParseRequest("xen", Auto, ""); err == nil || err.Error() != `--backend "xen": expected auto, firecracker or qemu` {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := ParseRequest(Auto, "hvf", ""); err == nil || err.Error() != `--accel "hvf": expected auto, kvm or tcg` {
		t.Errorf("unknown accelerator: %v", err)
	}
	if _, err := Get("xen"); err == nil || !strings.Contains(err.Error(), "expected firecracker or qemu") {
		t.Errorf("Get: %v", err)
	}
}

// Every entry builds the backend it names, says what it can do, and claims snapshots only if
// it can take and restore them (launch checks both before it snapshots or restores).
func TestRegistry(t *testing.T) {
	for _, e := range All() {
		b := e.New(nil)
		caps := e.Capabilities()
		if b.Name() != e.Name || e.Title == "" || e.Binary == "" || e.Install == "" || e.CheckNet == nil {
			t.Errorf("entry %+v builds %s", e, b.Name())
		}
		if len(caps.Accelerators) == 0 || len(caps.Nets) == 0 || caps.ControlChan == "" {
			t.Errorf("%s: capabilities %+v", e.Name, caps)
		}
		if _, ok := b.(vmm.Snapshotter); caps.Snapshots && !ok {
			t.Errorf("%s claims snapshots but is no vmm.Snapshotter", e.Name)
		}
	}
	if e, err := Get(""); err != nil || e.Name != "qemu" || Title("qemu") != "QEMU" || Title("firecracker") != "Firecracker" {
		t.Errorf("a guest recorded without a backend: %+v, %v", e, err)
	}
}
