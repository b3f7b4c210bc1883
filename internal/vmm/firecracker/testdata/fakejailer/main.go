// Command fakejailer stands in for Firecracker's jailer in the backend's process-level test. It
// takes the jailer's arguments, refusing one it does not know or one given twice, and does what
// the backend relies on the jailer for: it copies --exec-file into
// <chroot-base-dir>/<exec file name>/<id>/root, gives that directory to --uid and --gid, chroots
// into it, drops to --uid and --gid and execs the copy with --id, the start times and the
// arguments after "--". It makes no mount namespace (the mounts the backend makes in the chroot
// are seen all the same), cgroups or device nodes.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "fakejailer: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	seen := map[string]bool{}
	for _, a := range os.Args[1:] {
		if a == "--" {
			break
		}
		if seen[a] && strings.HasPrefix(a, "--") {
			fail("the argument %s was provided more than once", a)
		}
		seen[a] = true
	}
	fs := flag.NewFlagSet("jailer", flag.ExitOnError)
	id := fs.String("id", "", "")
	execFile := fs.String("exec-file", "", "")
	uid := fs.Int("uid", -1, "")
	gid := fs.Int("gid", -1, "")
	base := fs.String("chroot-base-dir", "/srv/jailer", "")
	cgroups := fs.String("cgroup-version", "", "")
	fs.String("netns", "", "")
	fs.Parse(os.Args[1:]) // stops after "--": fs.Args() are firecracker's
	if *id == "" || *execFile == "" || *uid < 0 || *gid < 0 || *cgroups == "" {
		fail("missing --id, --exec-file, --uid, --gid or --cgroup-version")
	}
	name := filepath.Base(*execFile)
	if !strings.Contains(name, "firecracker") {
		fail("the exec file name must contain \"firecracker\": %s", name)
	}
	root := filepath.Join(*base, name, *id, "root")
	if err := os.MkdirAll(root, 0o700); err != nil {
		fail("%v", err)
	}
	bin, err := os.ReadFile(*execFile)
	if err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(filepath.Join(root, name), bin, 0o755); err != nil {
		fail("%v", err)
	}
	if err := os.Chown(root, *uid, *gid); err != nil {
		fail("%v", err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		fail("%v", err)
	}
	if err := syscall.Chroot(root); err != nil {
		fail("chroot: %v", err)
	}
	if err := syscall.Chdir("/"); err != nil {
		fail("%v", err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		fail("setgroups: %v", err)
	}
	if err := syscall.Setgid(*gid); err != nil {
		fail("setgid: %v", err)
	}
	if err := syscall.Setuid(*uid); err != nil {
		fail("setuid: %v", err)
	}
	args := append([]string{"/" + name, "--id", *id, "--start-time-us", "1", "--start-time-cpu-us", "1", "--parent-cpu-time-us", "0"}, fs.Args()...)
	fail("exec: %v", syscall.Exec("/"+name, args, os.Environ()))
}
