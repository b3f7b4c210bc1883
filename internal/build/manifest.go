package build

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/version"
)

// GuestModules are the kernel modules every guest loads: virtio transport, disk, and the root
// filesystem with its overlay. Pack adds their dependencies.
var GuestModules = []string{"virtio_mmio", "virtio_blk", "erofs", "overlay"}

// GuestModuleGroups are the modules a guest loads only when a run needs them: the NIC driver,
// and the host channel of each VMM (the same image runs under both), which the guest loads
// once its workload runs.
var GuestModuleGroups = map[string][]string{
	abi.ModulesNet:          {"virtio_net"},
	abi.ModulesVirtioSerial: {"virtio_console"},
	abi.ModulesVsock:        {"vmw_vsock_virtio_transport"},
}

// ModulesFor is GuestModules plus what the project's features need: ext4 for a data volume
// (left out by pack when it is built into the kernel).
func ModulesFor(cfg *project.Config) []string {
	mods := append([]string(nil), GuestModules...)
	if cfg.Data.DiskMB > 0 {
		mods = append(mods, "ext4")
	}
	return mods
}

// Manifest describes the image of a build: what runs, as whom, with which defaults.
func Manifest(cfg *project.Config, base project.Base, res *Result, lockDigest string, lockPackages int) (abi.Manifest, error) {
	m := abi.Manifest{
		ABI:     abi.Version,
		Name:    cfg.Project.Name,
		Adapter: abi.Adapter{Name: cfg.Build.Adapter, Runtime: res.Runtime},
		Workdir: abi.AppDir,
		Env:     map[string]string{},
		Run: abi.RunDefaults{
			VCPU: cfg.Run.VCPU, MemoryMB: cfg.Run.MemoryMB, Net: cfg.Run.Net,
			Publish: append([]string(nil), cfg.Run.Publish...),
		},
		Data:  abi.Data{DiskMB: cfg.Data.DiskMB},
		Users: res.Users,
		Lock:  abi.LockRef{Digest: lockDigest, Packages: lockPackages},
		Build: abi.BuildInfo{Ukernel: version.Version, Go: version.Go(), SourceDateEpoch: res.Epoch},
	}
	if base.PythonVersion != "" {
		m.Env["PYTHONUNBUFFERED"] = "1"
		m.Env["PYTHONDONTWRITEBYTECODE"] = "1"
	}
	for k, v := range cfg.Run.Env {
		m.Env[k] = v
	}
	if cfg.SelectedRole != "" {
		m.Role = cfg.SelectedRole
		m.Env[abi.RoleEnv] = cfg.SelectedRole
	}
	m.User = cfg.Project.User
	if m.User == "" {
		m.User = AppUser.Name
	}
	if !hasUser(res.Users, m.User) {
		return m, cfg.Errorf("project.user", "no user %q in the image (known: %s)", m.User, userNames(res.Users))
	}
	if cfg.Project.Entry != "" {
		argv, err := entryArgv(cfg, base)
		if err != nil {
			return m, err
		}
		m.Entry = argv
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		s := cfg.Services[name]
		argv := append([]string(nil), s.Command...)
		abs, err := lookPath(res.RootDir, argv[0])
		if err != nil {
			return m, cfg.Errorf("services."+name+".command", "%v", err)
		}
		argv[0] = abs
		user := s.User
		if user == "" {
			user = AppUser.Name
		}
		if !hasUser(res.Users, user) {
			return m, cfg.Errorf("services."+name+".user", "no user %q in the image (known: %s)", user, userNames(res.Users))
		}
		m.Services = append(m.Services, abi.Service{Name: name, Command: argv, Env: s.Env, Workdir: s.Workdir, User: user, Restart: s.Restart,
			Secrets: append([]string(nil), s.Secrets...)})
	}
	m.Secrets = append([]string(nil), cfg.Project.Secrets...)
	for _, name := range slices.Sorted(maps.Keys(cfg.Health)) {
		h := cfg.Health[name]
		hc := abi.HealthCheck{Service: name, HTTP: h.HTTP, IntervalS: h.IntervalS, TimeoutS: h.TimeoutS, Retries: h.Retries, StartPeriod: h.StartPeriodS}
		if len(h.Cmd) > 0 {
			argv := append([]string(nil), h.Cmd...)
			abs, err := lookPath(res.RootDir, argv[0])
			if err != nil {
				return m, cfg.Errorf("health."+name+".cmd", "%v", err)
			}
			argv[0] = abs
			hc.Cmd = argv
		}
		m.Health = append(m.Health, hc)
	}
	return m, nil
}

// entryArgv is how the adapter starts the entry in the guest.
func entryArgv(cfg *project.Config, base project.Base) ([]string, error) {
	lang, ok := project.LookupLanguage(cfg.Build.Adapter)
	if !ok {
		return nil, fmt.Errorf("adapter %q has no entry convention", cfg.Build.Adapter)
	}
	return lang.Argv(cfg.EntryInGuest(), cfg.Project.Name, base), nil
}

var guestPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", abi.AppDir}

// lookPath resolves a command name inside the staged root, as the guest's PATH would, so a
// missing program is a build error rather than a failure at boot.
func lookPath(root, name string) (string, error) {
	if strings.Contains(name, "/") {
		if !path.IsAbs(name) {
			return "", fmt.Errorf("%q: use an absolute path or a program name", name)
		}
		return name, nil
	}
	for _, dir := range guestPath {
		p := filepath.Join(root, dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path.Join(dir, name), nil
		}
	}
	return "", fmt.Errorf("program %q is not in the image (searched %s); add its package with 'ukernel env add --system'", name, strings.Join(guestPath, ":"))
}

func hasUser(users []abi.User, name string) bool {
	for _, u := range users {
		if u.Name == name {
			return true
		}
	}
	return false
}

func userNames(users []abi.User) string {
	var n []string
	for _, u := range users {
		n = append(n, u.Name)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}
