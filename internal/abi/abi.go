// Package abi is the contract between the host (ukernel) and the guest (ukernel-init): the
// manifest packed into every image, the run-time boot config the host hands to a booting guest,
// the events the guest reports and the control messages the host sends. Both sides import this
// package and nothing else defines these shapes.
package abi

import (
	"fmt"
	"strings"
)

// Version is the ABI version this build speaks. Host and guest refuse a different major.minor.
const Version = "0.3.0"

// Compatible reports whether a peer speaking version v can be talked to, and why not.
func Compatible(v string) error {
	if v == "" {
		return fmt.Errorf("peer did not state an ABI version (this side speaks %s)", Version)
	}
	if majorMinor(v) != majorMinor(Version) {
		return fmt.Errorf("ABI mismatch: peer speaks %s, this side speaks %s; rebuild the image with this ukernel (ukernel pack)", v, Version)
	}
	return nil
}

func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// Module groups of Manifest.ModuleGroups. Under software emulation each module costs a boot
// 5-40 ms, so the guest loads a group only when the run needs it, and loads the host channel
// only after the workload has started (its events wait in a queue until then).
const (
	ModulesNet          = "net"           // the NIC driver: only for a run with a network
	ModulesVirtioSerial = "virtio-serial" // QEMU's host channel (events and control ports)
	ModulesVsock        = "vsock"         // Firecracker's host channel
)

// Well-known names shared by host and guest.
const (
	// ManifestPath is where the manifest sits in the boot partition and in the initramfs.
	ManifestPath = "manifest.json"
	// InitramfsManifest is the manifest's path inside the initramfs.
	InitramfsManifest = "/ukernel/manifest.json"
	// EventsPort names the virtio-serial port the guest writes events to (one JSON object per line).
	EventsPort = "ukernel.events"
	// ControlPort names the virtio-serial port the host sends control messages on.
	ControlPort = "ukernel.ctl"
	// EventsVsockPort and ControlVsockPort carry the same streams over AF_VSOCK where the VMM has
	// no virtio-serial (Firecracker): the guest connects to the host (CID 2) on EventsVsockPort
	// and listens on ControlVsockPort for the host.
	EventsVsockPort  = 1024
	ControlVsockPort = 1025
	// ConfigMagic starts the run-time config drive: magic, 8-byte little-endian length, JSON.
	ConfigMagic = "UKCONFIG"
	// RoleEnv is the workload's environment variable naming its role (Manifest.Role), set
	// when the image has one.
	RoleEnv = "UKERNEL_ROLE"
	// AppDir is where the workload's src/ is installed in the guest.
	AppDir = "/app"
	// DataDir is where the persistent data volume is mounted.
	DataDir = "/data"
	// DataLabel is the ext4 volume label of the data volume; the guest finds its disk by it.
	DataLabel = "ukernel-data"
	// SecretsDir is the tmpfs directory holding the run-time secrets, one file per secret.
	SecretsDir = "/run/secrets"
	// RootLabel and BootLabel are the GPT partition names of an image.
	BootLabel = "ukernel-boot"
	RootLabel = "ukernel-root"
)

// Manifest describes an image: what it runs and everything needed to verify it.
// It is written once at pack time, read by `inspect`, by the VMM backends and by the guest init.
type Manifest struct {
	ABI  string `json:"abi"`
	Name string `json:"name"`
	// Role is the [roles.NAME] of ukernel.toml the image was built for ("": none); the
	// workload sees it as RoleEnv.
	Role     string            `json:"role,omitempty"`
	Adapter  Adapter           `json:"adapter"`
	Entry    []string          `json:"entry,omitempty"` // argv in the guest; empty: services only
	Workdir  string            `json:"workdir,omitempty"`
	Env      map[string]string `json:"env,omitempty"`     // static environment of the workload
	User     string            `json:"user,omitempty"`    // user the entry runs as; "" means root
	Secrets  []string          `json:"secrets,omitempty"` // run-time secrets the entry may read
	Services []Service         `json:"services,omitempty"`
	Health   []HealthCheck     `json:"health,omitempty"`
	Run      RunDefaults       `json:"run"`
	Data     Data              `json:"data"`
	Kernel   Kernel            `json:"kernel"`
	Modules  []string          `json:"modules,omitempty"` // load order; paths under /lib/modules/<release>/
	// ModuleGroups names the modules (a subset of Modules, same paths, same order) that the
	// guest loads only when a run needs them, by group (ModulesNet, ...); the rest of Modules
	// is loaded first, at every boot.
	ModuleGroups map[string][]string `json:"module_groups,omitempty"`
	Root         Root                `json:"root"`
	Users        []User              `json:"users,omitempty"` // system users and groups emulated from maintainer scripts
	// Exec allows `ukernel exec` and `shell` into the guest: a development image, or one whose
	// project sets [debug] shell = true; --release and pack --readonly images refuse them.
	Exec      bool       `json:"exec,omitempty"`
	Lock      LockRef    `json:"lock"`
	Artefacts []Artefact `json:"artefacts"`
	Build     BuildInfo  `json:"build"`
}

// Adapter names the language adapter and the runtime it was built from (e.g. python, python-3.11).
type Adapter struct {
	Name    string `json:"name"`
	Runtime string `json:"runtime"`
}

// Service is a supervised process beside the entry.
type Service struct {
	Name    string            `json:"name"`
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
	User    string            `json:"user,omitempty"`
	Restart string            `json:"restart,omitempty"` // no, on-failure, always
	Secrets []string          `json:"secrets,omitempty"` // run-time secrets this service may read
}

// HealthCheck probes a service.
type HealthCheck struct {
	Service     string   `json:"service"`
	HTTP        string   `json:"http,omitempty"`
	Cmd         []string `json:"cmd,omitempty"`
	IntervalS   int      `json:"interval_s"`
	TimeoutS    int      `json:"timeout_s"`
	Retries     int      `json:"retries,omitempty"`
	StartPeriod int      `json:"start_period_s,omitempty"`
}

// RunDefaults are the run settings baked in at pack time; `run` flags override them.
type RunDefaults struct {
	VCPU     int      `json:"vcpu"`
	MemoryMB int      `json:"memory_mb"`
	Net      string   `json:"net"`
	Publish  []string `json:"publish,omitempty"`
}

// Data describes the persistent data volume; DiskMB 0 means none.
type Data struct {
	DiskMB int `json:"disk_mb"`
}

// Kernel identifies the guest kernel.
type Kernel struct {
	Package string `json:"package"` // Debian package it came from
	Version string `json:"version"` // package version
	Release string `json:"release"` // uname -r
	Cmdline string `json:"cmdline"` // base kernel command line the backends use
}

// Root describes the root filesystem partition.
type Root struct {
	FSType string  `json:"fstype"` // erofs
	Size   int64   `json:"size"`
	SHA256 string  `json:"sha256"`
	Verity *Verity `json:"verity,omitempty"`
}

// Verity holds the dm-verity parameters of a read-only root.
type Verity struct {
	RootHash      string `json:"root_hash"`
	Salt          string `json:"salt"`
	DataBlocks    int64  `json:"data_blocks"`
	HashOffset    int64  `json:"hash_offset"` // bytes from the start of the root partition
	BlockSize     int    `json:"block_size"`
	HashAlgorithm string `json:"hash_algorithm"`
}

// User is a system user (and its primary group) the image provides.
type User struct {
	Name  string `json:"name"`
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	Home  string `json:"home"`
	Shell string `json:"shell"`
}

// LockRef ties the image to the lock it was built from.
type LockRef struct {
	Digest   string `json:"digest"`
	Packages int    `json:"packages"`
	// Closure lists the locked packages as "name=version" (Python wheels as "pypi:name=version"),
	// sorted, so `diff` can name what changed between two images without their locks.
	Closure []string `json:"closure,omitempty"`
}

// Artefact is one named input of the image with its size and digest.
type Artefact struct {
	Name   string `json:"name"` // kernel, initramfs, root, bundle, adapter, init
	Path   string `json:"path,omitempty"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// BuildInfo records the tools that produced the image.
type BuildInfo struct {
	Ukernel         string `json:"ukernel"`
	Go              string `json:"go"`
	SourceDateEpoch int64  `json:"source_date_epoch"`
}

// BootConfig is handed to the guest at run time on the config drive. It holds everything that
// must not be baked into the image: run-time environment, secrets, network settings.
type BootConfig struct {
	ABI      string            `json:"abi"`
	RunID    string            `json:"run_id"`
	Hostname string            `json:"hostname"`
	Env      map[string]string `json:"env,omitempty"`
	Secrets  map[string][]byte `json:"secrets,omitempty"`
	Network  Network           `json:"network"`
	HostTime int64             `json:"host_time_unix_ns"` // host wall clock when the config was written
	Debug    bool              `json:"debug,omitempty"`
	// Perf asks the guest to run its block IO probe after the entry exits (ukernel perf).
	Perf bool `json:"perf,omitempty"`
	// StopGraceS is how long the services still running get between SIGTERM and SIGKILL when
	// the entry exits by itself (run's --stop-timeout); 0: the guest's default.
	StopGraceS int `json:"stop_grace_s,omitempty"`
	// DataMB, when > 0, is the size of the data volume this run attaches, over the manifest's
	// Data.DiskMB (a template's data_mb): the image need not have one.
	DataMB int `json:"data_mb,omitempty"`
}

// Network is the guest's network configuration.
type Network struct {
	Mode    string   `json:"mode"`              // user, tap, none
	Address string   `json:"address,omitempty"` // CIDR, e.g. 10.0.2.15/24
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
}

// Event types the guest emits.
const (
	EventHello         = "hello"          // init started; carries ABI
	EventPhase         = "phase"          // a boot phase finished; Name, Start, Duration
	EventEntryStart    = "entry.start"    // the entry was started; PID
	EventEntryExit     = "entry.exit"     // the entry exited; Code
	EventServiceStart  = "service.start"  // Name, PID
	EventServiceExit   = "service.exit"   // Name, Code
	EventHealth        = "health"         // Name, Status
	EventServiceGiveUp = "service.giveup" // Name, Message: the restart limit was reached
	EventError         = "error"          // Message: a fatal init error; the guest powers off next
	EventPowerOff      = "poweroff"       // Code: the exit code handed to the host
	EventProbe         = "probe"          // Name (e.g. root.randread), Start, Duration, Values (ops, latency percentiles in ns)
)

// MaxEventLine bounds an event line a host reader keeps while waiting for its end (an event is a
// few hundred bytes): the guest writes the stream, and a line without end must not grow the
// host's memory.
const MaxEventLine = 1 << 20

// Event is one line of the guest's event stream (events.jsonl on the host).
// Times are the guest's CLOCK_BOOTTIME in nanoseconds since the kernel started.
type Event struct {
	Type     string           `json:"type"`
	Time     int64            `json:"t_ns"`
	Name     string           `json:"name,omitempty"`
	Start    int64            `json:"start_ns,omitempty"`
	Duration int64            `json:"dur_ns,omitempty"`
	PID      int              `json:"pid,omitempty"`
	Code     *int             `json:"code,omitempty"`
	Status   string           `json:"status,omitempty"`
	Message  string           `json:"message,omitempty"`
	ABI      string           `json:"abi,omitempty"`
	Values   map[string]int64 `json:"values,omitempty"`
}

// ValueInitPeakRSS is the poweroff event's Values key for the init's own peak resident set, KiB.
const ValueInitPeakRSS = "init_peak_rss_kb"

// Control message types the host sends.
const (
	ControlStop = "stop" // stop the workload gracefully, then power off
)

// Control is one line the host writes to the control port.
type Control struct {
	Type    string   `json:"type"`
	GraceS  int      `json:"grace_s,omitempty"`
	Restore *Restore `json:"restore,omitempty"` // ControlRestore's content (restore.go)
}
