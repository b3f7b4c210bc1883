package launch

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// TestResolveNetPublish: a published port on an image without a network (the minimal preset)
// switches the run to user networking and says so once; explicit conflicts stay errors.
func TestResolveNetPublish(t *testing.T) {
	none := abi.Manifest{Run: abi.RunDefaults{Net: "none"}}
	for _, tc := range []struct {
		name     string
		o        Options
		m        abi.Manifest
		mode     abi.NetMode
		ports    []vmm.Port
		note     string
		errMatch string
	}{
		{name: "publish on a none image", o: Options{Publish: []string{"8080:80"}}, m: none,
			mode: "user", ports: []vmm.Port{{Host: 8080, Guest: 80}}, note: "Network: user (--publish needs a network"},
		{name: "none image without publish", m: none, mode: "none"},
		{name: "explicit --net none", o: Options{Net: abi.Net{Mode: abi.NetNone}, Publish: []string{"8080:80"}}, m: none, errMatch: "--publish needs --net user"},
		{name: "tap", o: Options{Net: abi.Net{Mode: abi.NetTap, Iface: "tap0"}, Publish: []string{"8080:80"}}, errMatch: "--publish needs --net user"},
		{name: "user image keeps its ports", m: abi.Manifest{Run: abi.RunDefaults{Net: "user", Publish: []string{"9000:9000"}}},
			mode: "user", ports: []vmm.Port{{Host: 9000, Guest: 9000}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var progress bytes.Buffer
			n, err := resolveNet(tc.o, tc.m, &progress)
			if tc.errMatch != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
					t.Fatalf("err %v, want one containing %q", err, tc.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Mode != tc.mode || len(n.Publish) != len(tc.ports) {
				t.Fatalf("net %+v, want mode %s ports %v", n, tc.mode, tc.ports)
			}
			for i := range tc.ports {
				if n.Publish[i] != tc.ports[i] {
					t.Errorf("port %d: %+v, want %+v", i, n.Publish[i], tc.ports[i])
				}
			}
			out := progress.String()
			if tc.note == "" && out != "" || tc.note != "" && (!strings.HasPrefix(out, tc.note) || strings.Count(out, "\n") != 1) {
				t.Errorf("progress %q, want one line starting %q", out, tc.note)
			}
		})
	}
}
