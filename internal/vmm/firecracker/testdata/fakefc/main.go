// Command fakefc stands in for the firecracker binary in the backend's process-level test:
// Firecracker cannot run on the development host (no usable KVM). It answers --version as
// firecracker does; it refuses an argument given twice, as firecracker does; serves the API
// checked by fctest on --api-sock, opening the files the requests name when it gets them, as
// firecracker does; records every request to $FAKEFC_LOG; and plays the guest's side of vsock:
// after InstanceStart it prints a console line and sends one event to <uds_path>_1024 and a
// hello and a stdout line in output frames to <uds_path>_1026 (abi.Frame); on "CONNECT 1025"
// it answers OK, writes the control line it reads to $FAKEFC_CONTROL, and on a stop request
// writes a line at the start of each writable drive (the guest's /data) and exits as a guest
// that powered off; SendCtrlAltDel also makes it exit, unless the guest is paused.
//
// Snapshots as Firecracker takes and loads them: PUT /snapshot/create writes the configuration
// it was given (drive paths, vsock socket, tap devices, memory size) as the state, and the
// memory file as Firecracker does (opened for writing without truncation, sized, written);
// PUT /snapshot/load reads that state back and does what Firecracker does with it: it opens
// the memory file read-only and maps it privately (and writes to the mapping, as a running
// guest does), reopens the drives at the recorded paths, takes the tap devices from
// network_overrides and listens on the recorded vsock socket. What it opened (device, inode,
// mode) goes to $FAKEFC_OPENED. A failed load ends the process, as it ends Firecracker. The
// guest answers a vsock connection request only while it runs (after InstanceStart or a
// resume), as a paused guest cannot. A restored guest answers a restore message with a reseeded event and writes its line to its
// writable drives; a freeze with a frozen event.
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
	"syscall"
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
	config           state // what the API configured
)

// state is the fake's snapshot state file: the configuration Firecracker records.
type state struct {
	Drives []drive           `json:"drives"`
	Vsock  string            `json:"vsock"`
	Taps   map[string]string `json:"taps"` // iface_id: host_dev_name
	MemMiB int               `json:"mem_mib"`
}

type drive struct {
	ID, Path string
	ReadOnly bool
}

// Opened is one file a load opened, for $FAKEFC_OPENED.
type Opened struct {
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	Mode string `json:"mode"` // ro, rw, or private-map for the memory file
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Println("Firecracker v1.17.0-dev")
		return
	}
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
	srv.OnVsock = func(v map[string]any) {
		mu.Lock()
		config.Vsock = v["uds_path"].(string)
		mu.Unlock()
		listenVsock(config.Vsock)
	}
	srv.Create = create
	srv.Load = load
	srv.OnVM = func(state string) { setRunning(state == "Resumed") }
	srv.OnAction = func(action string) {
		switch action {
		case "InstanceStart":
			setRunning(true)
			uds := config.Vsock
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
			runMu.Lock()
			up := isUp
			runMu.Unlock()
			if !up {
				return // a paused guest takes no key press
			}
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
		reqs := srv.Requests()
		if last := reqs[len(reqs)-1]; last.Path == "/snapshot/load" && last.Status != http.StatusNoContent {
			// Firecracker ends after a failed load: its process is in no state to go on.
			go func() {
				time.Sleep(50 * time.Millisecond)
				os.Exit(1)
			}()
		}
		if os.Getenv("FAKEFC_LOG") == "" {
			return
		}
		b, _ := json.Marshal(reqs)
		atomicfile.WriteFile(os.Getenv("FAKEFC_LOG"), b, 0o644)
	}))
}

func listenVsock(uds string) {
	ln, err := net.Listen("unix", uds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vsock:", err)
		os.Exit(1)
	}
	go control(ln, uds)
}

// running is whether the guest's vCPUs run (started or resumed, not paused nor only loaded).
var (
	runMu   sync.Mutex
	running = sync.NewCond(&runMu)
	isUp    bool
)

func setRunning(up bool) {
	runMu.Lock()
	isUp = up
	runMu.Unlock()
	running.Broadcast()
}

func awaitRunning() {
	runMu.Lock()
	for !isUp {
		running.Wait()
	}
	runMu.Unlock()
}

// event sends one event line to the host's events socket, as the guest's init does.
func event(uds, line string) {
	if c, err := net.Dial("unix", uds+"_1024"); err == nil {
		fmt.Fprintln(c, line)
		c.Close()
	}
}

// create writes a full snapshot as Firecracker does.
func create(body map[string]any) error {
	mu.Lock()
	defer mu.Unlock()
	st, _ := json.Marshal(config)
	if err := os.WriteFile(body["snapshot_path"].(string), st, 0o600); err != nil {
		return fmt.Errorf("Cannot save the microVM state: %v", err)
	}
	f, err := os.OpenFile(body["mem_file_path"].(string), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("Cannot save the memory: open: %v", err)
	}
	defer f.Close()
	if err := f.Truncate(int64(config.MemMiB) << 20); err != nil {
		return fmt.Errorf("Cannot save the memory: set_length: %v", err)
	}
	if _, err := f.WriteAt([]byte(MemoryLine), 0); err != nil {
		return fmt.Errorf("Cannot save the memory: %v", err)
	}
	return f.Sync()
}

// MemoryLine is what the fake guest's memory starts with in a snapshot.
const MemoryLine = "fake guest memory\n"

// load restores a snapshot as Firecracker does: see the package comment.
func load(body map[string]any) error {
	data, err := os.ReadFile(body["snapshot_path"].(string))
	if err != nil {
		return fmt.Errorf("Load snapshot error: Failed to restore from snapshot: %v", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("Load snapshot error: Failed to restore from snapshot: %v", err)
	}
	mb := body["mem_backend"].(map[string]any)
	if mb["backend_type"] != "File" {
		return fmt.Errorf("the fake serves only the File memory backend")
	}
	var seen []Opened
	note := func(f *os.File, mode string) {
		var s syscall.Stat_t
		syscall.Fstat(int(f.Fd()), &s)
		seen = append(seen, Opened{Path: f.Name(), Dev: uint64(s.Dev), Ino: s.Ino, Mode: mode})
	}
	mem, err := os.Open(mb["backend_path"].(string)) // File::open: read-only
	if err != nil {
		return fmt.Errorf("Load snapshot error: Failed to restore from snapshot: Failed to load guest memory: %v", err)
	}
	size := st.MemMiB << 20
	if fi, _ := mem.Stat(); fi.Size() < int64(size) {
		return fmt.Errorf("Load snapshot error: the memory file is smaller than the guest's memory")
	}
	ram, err := syscall.Mmap(int(mem.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("Load snapshot error: mmap: %v", err)
	}
	if !strings.HasPrefix(string(ram), MemoryLine) {
		return fmt.Errorf("Load snapshot error: the memory file is not this snapshot's")
	}
	copy(ram, "a restored guest dirtied its memory\n")
	note(mem, "private-map")
	mu.Lock()
	defer mu.Unlock()
	opened = append(opened, mem)
	for _, d := range st.Drives {
		flag := os.O_RDWR
		mode := "rw"
		if d.ReadOnly {
			flag, mode = os.O_RDONLY, "ro"
		}
		f, err := os.OpenFile(d.Path, flag, 0)
		if err != nil {
			return fmt.Errorf("Load snapshot error: Failed to restore from snapshot: Failed to build microVM from snapshot: Block: %v", err)
		}
		note(f, mode)
		opened = append(opened, f)
		if flag == os.O_RDWR {
			writable = append(writable, f)
		}
	}
	if st.Taps == nil {
		st.Taps = map[string]string{}
	}
	if ov, ok := body["network_overrides"].([]any); ok {
		for _, o := range ov {
			o := o.(map[string]any)
			st.Taps[o["iface_id"].(string)] = o["host_dev_name"].(string)
		}
	}
	config = st
	if p := os.Getenv("FAKEFC_OPENED"); p != "" {
		out, _ := json.Marshal(map[string]any{"opened": seen, "taps": st.Taps, "vsock": st.Vsock})
		os.WriteFile(p, out, 0o644)
	}
	listenVsock(st.Vsock)
	return nil
}

// control plays the guest's control port (vsock 1025) behind Firecracker's handshake.
func control(ln net.Listener, uds string) {
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
		// The guest answers a connection request only while it runs.
		awaitRunning()
		fmt.Fprint(c, "OK 1073741824\n")
		for {
			msg, err := rd.ReadString('\n')
			if err != nil {
				c.Close()
				break
			}
			if p := os.Getenv("FAKEFC_CONTROL"); p != "" {
				os.WriteFile(p, []byte(msg), 0o644)
			}
			var ctl abi.Control
			json.Unmarshal([]byte(msg), &ctl)
			switch ctl.Type {
			case abi.ControlFreeze:
				event(uds, `{"type":"frozen"}`)
				continue
			case abi.ControlRestore:
				writeData()
				event(uds, `{"type":"reseeded"}`)
				continue
			}
			writeData()
			os.Exit(0)
		}
	}
}

// writeData writes DataLine at the start of each writable drive, as the guest's workload writes
// its /data.
func writeData() {
	mu.Lock()
	defer mu.Unlock()
	for _, f := range writable {
		if _, err := f.WriteAt([]byte(DataLine), 0); err != nil {
			fmt.Fprintln(os.Stderr, "data:", err)
			os.Exit(1)
		}
		f.Sync()
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
		ro, _ := body["is_read_only"].(bool)
		if !ro {
			flag = os.O_RDWR
		}
		mu.Lock()
		config.Drives = append(config.Drives, drive{ID: str("drive_id"), Path: str("path_on_host"), ReadOnly: ro})
		mu.Unlock()
	case strings.HasPrefix(path, "/network-interfaces/"):
		mu.Lock()
		if config.Taps == nil {
			config.Taps = map[string]string{}
		}
		config.Taps[str("iface_id")] = str("host_dev_name")
		mu.Unlock()
	case path == "/machine-config":
		n, _ := body["mem_size_mib"].(float64)
		mu.Lock()
		config.MemMiB = int(n)
		mu.Unlock()
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
