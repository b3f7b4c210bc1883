// Command fakefc stands in for the firecracker binary in the backend's process-level test:
// Firecracker cannot run on the development host (no usable KVM). It serves the API checked by
// fctest on --api-sock, records every request to $FAKEFC_LOG, and plays the guest's side of
// vsock: after InstanceStart it prints a console line and sends one event to <uds_path>_1024;
// on "CONNECT 1025" it answers OK, writes the control line it reads to $FAKEFC_CONTROL and exits
// as a guest that powered off; SendCtrlAltDel also makes it exit.
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
	"time"

	"github.com/ukernel-dev/ukernel/internal/vmm/firecracker/fctest"
)

func main() {
	sock := flag.String("api-sock", "", "API socket")
	flag.String("id", "", "instance id")
	flag.Parse()
	srv := &fctest.Server{Fail: map[string]string{}}
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
		b, _ := json.Marshal(srv.Requests())
		tmp := os.Getenv("FAKEFC_LOG") + ".tmp"
		os.WriteFile(tmp, b, 0o644)
		os.Rename(tmp, os.Getenv("FAKEFC_LOG"))
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
		os.WriteFile(os.Getenv("FAKEFC_CONTROL"), []byte(msg), 0o644)
		os.Exit(0)
	}
}
