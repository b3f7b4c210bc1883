package build

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Debian maintainer scripts never run in a ukernel build: they expect a running system, root and
// the host's tools. Their effects that a workload depends on are emulated here, declaratively,
// from what the lock contains. docs/IMAGE.md lists them; keep the two in step.

// staticUsers are base-passwd's fixed entries that workloads and packages rely on.
var staticUsers = []abi.User{
	{Name: "root", UID: 0, GID: 0, Home: "/root", Shell: "/bin/sh"},
	{Name: "daemon", UID: 1, GID: 1, Home: "/usr/sbin", Shell: "/usr/sbin/nologin"},
	{Name: "bin", UID: 2, GID: 2, Home: "/bin", Shell: "/usr/sbin/nologin"},
	{Name: "sys", UID: 3, GID: 3, Home: "/dev", Shell: "/usr/sbin/nologin"},
	{Name: "www-data", UID: 33, GID: 33, Home: "/var/www", Shell: "/usr/sbin/nologin"},
	{Name: "nobody", UID: 65534, GID: 65534, Home: "/nonexistent", Shell: "/usr/sbin/nologin"},
}

// AppUser runs the entry and services unless they name another user.
var AppUser = abi.User{Name: "app", UID: 1000, GID: 1000, Home: "/app", Shell: "/bin/sh"}

// packageUsers are the system users that packages' postinst scripts create with adduser, with
// fixed ids so images are reproducible (adduser would pick the next free id).
var packageUsers = map[string]abi.User{
	"postgresql-common": {Name: "postgres", UID: 101, GID: 101, Home: "/var/lib/postgresql", Shell: "/bin/sh"},
	"redis-server":      {Name: "redis", UID: 102, GID: 102, Home: "/var/lib/redis", Shell: "/usr/sbin/nologin"},
	"memcached":         {Name: "memcache", UID: 103, GID: 103, Home: "/nonexistent", Shell: "/usr/sbin/nologin"},
	"nginx-common":      {Name: "nginx", UID: 104, GID: 104, Home: "/nonexistent", Shell: "/usr/sbin/nologin"},
}

// packageLinks are links that postinst scripts make with update-alternatives or ln, keyed by the
// package whose presence implies them: link path -> target (relative to the link's directory).
var packageLinks = map[string]map[string]string{
	"dash":       {"usr/bin/sh": "dash"},
	"mawk":       {"usr/bin/awk": "mawk"},
	"python3.11": {"usr/bin/python3": "python3.11"},
	"python3.13": {"usr/bin/python3": "python3.13"},
}

// emulate applies the maintainer-script effects to the root tree and returns the users it made.
func emulate(root string, packages []string, extraUsers []abi.User) ([]abi.User, error) {
	have := map[string]bool{}
	for _, p := range packages {
		have[p] = true
	}
	users := append([]abi.User{}, staticUsers...)
	for _, p := range slices.Sorted(maps.Keys(packageUsers)) {
		if have[p] {
			users = append(users, packageUsers[p])
		}
	}
	users = append(users, extraUsers...)
	sort.Slice(users, func(i, j int) bool { return users[i].UID < users[j].UID })
	if err := writeAccounts(root, users); err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(packageLinks)) {
		if !have[p] {
			continue
		}
		links := packageLinks[p]
		for _, l := range slices.Sorted(maps.Keys(links)) {
			dst, err := inRoot(root, l, false)
			if err != nil {
				return nil, fmt.Errorf("link %s for %s: %w", l, p, err)
			}
			if _, err := os.Lstat(dst); err == nil {
				continue
			}
			if err := os.Symlink(links[l], dst); err != nil {
				return nil, fmt.Errorf("link %s for %s: %w", l, p, err)
			}
		}
	}
	if have["ca-certificates"] {
		if err := caBundle(root); err != nil {
			return nil, err
		}
	}
	for _, u := range users {
		if u.Home == "" || u.Home == "/nonexistent" || u.UID == 0 {
			continue
		}
		home, err := inRoot(root, u.Home, true)
		if err != nil {
			return nil, fmt.Errorf("home of %s: %w", u.Name, err)
		}
		if err := os.MkdirAll(home, 0o755); err != nil {
			return nil, err
		}
	}
	return users, nil
}

func writeAccounts(root string, users []abi.User) error {
	var passwd, group, shadow strings.Builder
	for _, u := range users {
		fmt.Fprintf(&passwd, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Name, u.Home, u.Shell)
		fmt.Fprintf(&group, "%s:x:%d:\n", u.Name, u.GID)
		fmt.Fprintf(&shadow, "%s:*:0:0:99999:7:::\n", u.Name)
	}
	for name, content := range map[string]string{"passwd": passwd.String(), "group": group.String(), "shadow": shadow.String()} {
		mode := os.FileMode(0o644)
		if name == "shadow" {
			mode = 0o640
		}
		if err := writeInRoot(root, "etc/"+name, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

// caBundle concatenates the certificates the way update-ca-certificates does, sorted by path.
func caBundle(root string) error {
	var certs []string
	base, err := inRoot(root, "usr/share/ca-certificates", true)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".crt") {
			certs = append(certs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	sort.Strings(certs)
	var b strings.Builder
	for _, c := range certs {
		data, err := os.ReadFile(c)
		if err != nil {
			return err
		}
		b.Write(data)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return writeInRoot(root, "etc/ssl/certs/ca-certificates.crt", []byte(b.String()), 0o644)
}
