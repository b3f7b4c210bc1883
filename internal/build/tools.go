package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/debian"
)

// toolApplets are the busybox applets linked in abi.ExecToolsDir: a shell and what a look
// inside a running guest needs. Fixed rather than asked of the binary (`busybox --list`), which
// would have to run on the build host for the guest's architecture.
var toolApplets = []string{
	"sh", "ash", "awk", "basename", "cat", "chmod", "chown", "clear", "cp", "cut", "date", "df",
	"dirname", "dmesg", "du", "echo", "env", "expr", "false", "find", "free", "grep", "gunzip",
	"gzip", "head", "hexdump", "hostname", "id", "ip", "kill", "less", "ln", "ls", "md5sum",
	"mkdir", "more", "mount", "mv", "nc", "netstat", "nslookup", "od", "ping", "printenv",
	"printf", "ps", "pwd", "readlink", "realpath", "reset", "rm", "rmdir", "sed", "seq",
	"sha256sum", "sleep", "sort", "stat", "stty", "tail", "tar", "tee", "test", "top", "touch",
	"tr", "true", "tty", "umount", "uname", "uniq", "uptime", "vi", "watch", "wc", "wget",
	"which", "whoami", "xargs", "yes",
}

// installTools puts the static busybox of the locked tools package in abi.ExecToolsDir of
// rootDir, with a link per applet: exec and shell find them after the image's own PATH.
func installTools(ctx context.Context, d Deb, rootDir, tmp string) error {
	u, err := debian.ExtractDeb(ctx, d.Path, tmp)
	if err != nil {
		return fmt.Errorf("%s %s: %w", d.Name, d.Version, err)
	}
	if err := u.Matches(d.Name, d.Version, d.Architecture); err != nil {
		return fmt.Errorf("%s: %w", d.Path, err)
	}
	// Debian 12 ships it in /bin, Debian 13 (its /usr merge finished) in /usr/bin.
	var data []byte
	for _, p := range []string{"bin/busybox", "usr/bin/busybox"} {
		if data, err = os.ReadFile(filepath.Join(tmp, p)); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s has no bin/busybox or usr/bin/busybox: %w", d.Name, d.Version, err)
	}
	dir := filepath.Join(abi.ExecToolsDir, "busybox")
	if err := writeInRoot(rootDir, dir[1:], data, 0o755); err != nil {
		return err
	}
	for _, a := range toolApplets {
		p, err := inRoot(rootDir, filepath.Join(abi.ExecToolsDir, a)[1:], false)
		if err != nil {
			return err
		}
		if err := os.Symlink("busybox", p); err != nil {
			return err
		}
	}
	return os.RemoveAll(tmp)
}
