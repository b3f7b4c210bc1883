package launch

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/vmm"
	"github.com/ukernel-dev/ukernel/internal/vmm/kvmprobe"
)

// A host port a run cannot publish is most often another guest's: the error names it and how
// to free the port, or which other port to take.
func TestBusyPortNamesItsGuest(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	store, err := runstate.OpenAt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start, _ := runstate.ProcessStart(os.Getpid())
	for _, st := range []*runstate.State{
		{Name: "flask", Ports: []string{fmt.Sprintf("%d:8080", port)}, Owner: os.Getpid(), OwnerStart: start},
		{Name: "old", Ports: []string{fmt.Sprintf("%d:8080", port)}, Exited: true},
	} {
		if err := store.Save(st); err != nil {
			t.Fatal(err)
		}
	}
	netw := vmm.Net{Mode: abi.NetUser, Publish: []vmm.Port{{Host: port, Guest: 8080}}}
	o := Options{Store: store, Backend: "qemu", Accel: "tcg"}
	_, _, err = chooseVMM(t.Context(), o, netw, kvmprobe.Spec{CacheDir: t.TempDir()}, &strings.Builder{})
	for _, want := range []string{
		fmt.Sprintf("host port %d on 127.0.0.1 is not free", port),
		"publish another host port (--publish PORT:8080)",
		"or stop the guest flask that publishes it (ukernel stop flask)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("busy port: %v; want %q", err, want)
		}
	}
	if g := publisher(store, []vmm.Port{{Host: port + 1, Guest: 80}}); g != "" {
		t.Errorf("port %d is published by no guest, got %q", port+1, g)
	}
}
