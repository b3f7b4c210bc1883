// Command fakefc stands in for the firecracker binary in the backend's process-level test:
// Firecracker cannot run on the development host (no usable KVM). It refuses an argument given
// twice, as firecracker does; serves the API checked by fctest on --api-sock, opening the files
// the requests name when it gets them, as firecracker does; records every request to
// $FAKEFC_LOG; and plays the guest's side of vsock: after InstanceStart it prints a console line
// and sends one event to <uds_path>_1024 and a hello and a stdout line in output frames to
// <uds_path>_1026 (abi.Frame); on "CONNECT 1025" it answers OK, writes the control
// line it reads to $FAKEFC_CONTROL, writes a line at the start of each writable drive (the
// guest's /data) and exits as a guest that powered off; SendCtrlAltDel also makes it exit.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker/fctest"
)

// DataLine is what the fake guest writes at the start of each writable drive before it powers off.
const DataLine = "fake guest: /data written\n"

// The files opened for the configuration, kept open as firecracker keeps them; writable are
// the drives among them opened for writing.
var (
	mu               sync.Mutex
	opened, writable []*os.File
)

func main() {
	seen := map[string]bool{}
	for _, a := range os.Args[1:] {
		name, _, _ := strings.Cut(a, "=")
		if !strings.HasPrefix(name, "--") {
			continue
		}
		if seen[name] {
			fmt.Fprintf(os.Stderr, "Arguments parsing error: The argument '%s' was provided more than once.\n", strings.TrimPrefix(name, "--"))
			os.Exit(153)
		}
		seen[name] = true
	}
	sock := flag.String("api-sock", "", "API socket")
	flag.String("id", "", "instance id")
	// The jailer passes its start times.
	flag.String("start-time-us", "", "")
	flag.String("start-time-cpu-us", "", "")
	flag.String("parent-cpu-time-us", "", "")
	flag.Parse()
	srv := &fctest.Server{Fail: map[string]string{}, Open: open}
	if f := os.Getenv("FAKEFC_FAIL"); f != "" {
		req, msg, _ := strings.Cut(f, "=")
		srv.Fail[req] = msg
	}
	var uds string
	srv.OnVsock = func(v map[string]any) {
		uds = v["uds_path"].(string)
		ln, err := net.Listen("unix", uds)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vsock:", err)
			os.Exit(1)
		}
		go control(ln)
	}
	srv.OnAction = func(action string) {
		switch action {
		case "InstanceStart":
			fmt.Println("fake guest: booted")
			if c, err := net.Dial("unix", uds+"_1024"); err == nil {
				fmt.Fprintln(c, `{"type":"hello","t_ns":1,"abi":"fake"}`)
				c.Close()
			}
			if c, err := net.Dial("unix", fmt.Sprintf("%s_%d", uds, abi.OutputVsockPort)); err == nil {
				b, _ := abi.AppendFrames(nil, abi.Frame{Kind: abi.FrameHello, Data: []byte(abi.Version)})
				b, _ = abi.AppendFrames(b, abi.Frame{Kind: abi.FrameStdout, Data: []byte("fake workload: hello\n")})
				c.Write(b)
				c.Close()
			}
		case "SendCtrlAltDel":
			go func() {
				time.Sleep(50 * time.Millisecond)
				os.Exit(0)
			}()
		}
	}
	ln, err := net.Listen("unix", *sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.ServeHTTP(w, r)
		if os.Getenv("FAKEFC_LOG") == "" {
			return
		}
		b, _ := json.Marshal(srv.Requests())
		atomicfile.WriteFile(os.Getenv("FAKEFC_LOG"), b, 0o644)
	}))
}

// control plays the guest's control port (vsock 1025) behind Firecracker's handshake.
func control(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		rd := bufio.NewReader(c)
		line, _ := rd.ReadString('\n')
		if line != "CONNECT 1025\n" {
			c.Close()
			continue
		}
		fmt.Fprint(c, "OK 1073741824\n")
		msg, _ := rd.ReadString('\n')
		if p := os.Getenv("FAKEFC_CONTROL"); p != "" {
			os.WriteFile(p, []byte(msg), 0o644)
		}
		mu.Lock()
		for _, f := range writable {
			if _, err := f.WriteAt([]byte(DataLine), 0); err != nil {
				fmt.Fprintln(os.Stderr, "data:", err)
				os.Exit(1)
			}
			f.Sync()
		}
		mu.Unlock()
		os.Exit(0)
	}
}

// open opens the files a configuration request names, as firecracker does when it gets it, and
// keeps them open: it answers a file it cannot open with a fault.
func open(path string, body map[string]any) error {
	str := func(k string) string { v, _ := body[k].(string); return v }
	var names []string
	flag := os.O_RDONLY
	switch {
	case path == "/logger" || path == "/metrics":
		names, flag = []string{str("log_path") + str("metrics_path")}, os.O_WRONLY|os.O_APPEND
	case path == "/boot-source":
		names = []string{str("kernel_image_path")}
		if p := str("initrd_path"); p != "" {
			names = append(names, p)
		}
	case strings.HasPrefix(path, "/drives/"):
		names = []string{str("path_on_host")}
		if ro, _ := body["is_read_only"].(bool); !ro {
			flag = os.O_RDWR
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		f, err := os.OpenFile(n, flag, 0)
		if err != nil {
			return fmt.Errorf("Unable to open %s: %v", n, err)
		}
		opened = append(opened, f)
		if flag == os.O_RDWR {
			writable = append(writable, f)
		}
	}
	return nil
}
