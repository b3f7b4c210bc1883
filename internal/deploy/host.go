package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/filelock"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/image"
	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runenv"
	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// AgentCommand is the hidden subcommand that does deploy's work on the host: the same ukernel
// binary deploy copied there, so both ends speak one version of the requests below. Requests
// come on stdin (never the command line: they carry the run-time environment and secrets),
// answers as one JSON document on stdout.
const AgentCommand = "__deploy-agent"

// Agent operations.
const (
	OpPrepare  = "prepare"   // Prepare → Prepared
	OpPutImage = "put-image" // args DIGEST; stdin: the image bytes → PutImage
	OpActivate = "activate"  // Activate → App
	OpRollback = "rollback"  // NameRequest → App
	OpStop     = "stop"      // NameRequest → App
	OpStatus   = "status"    // NameRequest → App
)

// Supervisors: what keeps a deployed guest running on the host.
const (
	SupervisorSystemd = "systemd" // a unit ukernel-NAME.service
	SupervisorMonitor = "monitor" // ukernel run -d --restart on-failure
)

// Prepare asks what the host has for a deployment.
type Prepare struct {
	Name   string `json:"name"`
	Digest string `json:"digest"` // hex SHA-256 of the image
}

// Prepared is the host's answer.
type Prepared struct {
	HasImage   bool   `json:"has_image"`
	Supervisor string `json:"supervisor"`
	App        *App   `json:"app,omitempty"` // the current deployment of the name, if any
}

// PutImage is the answer to a stored image.
type PutImage struct {
	Digest string `json:"digest"`
	Bytes  int64  `json:"bytes"`
}

// Activate asks the host to run a new revision of name.
type Activate struct {
	Name     string            `json:"name"`
	Digest   string            `json:"digest"`
	VCPU     int               `json:"vcpu,omitempty"` // 0: the image's
	MemoryMB int               `json:"memory_mb,omitempty"`
	DataMB   int               `json:"data_mb,omitempty"` // 0: the image's [data] disk_mb
	Net      string            `json:"net,omitempty"`
	Publish  []string          `json:"publish,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Secrets  map[string][]byte `json:"secrets,omitempty"`
	// Pulled is what was kept from the image's pull (its manifest and signatures), nil for
	// an image that was not pulled: the host applies its own trust policy to it.
	Pulled *oci.Record `json:"pulled,omitempty"`
}

// NameRequest names a deployment.
type NameRequest struct {
	Name string `json:"name"`
}

// Revision is one deployed image with its run settings; the values of the environment and the
// secrets are not recorded (they live in the run directory on tmpfs only).
type Revision struct {
	ID       string   `json:"id"`
	Digest   string   `json:"digest"`
	VCPU     int      `json:"vcpu,omitempty"`
	MemoryMB int      `json:"memory_mb,omitempty"`
	DataMB   int      `json:"data_mb,omitempty"`
	Net      string   `json:"net,omitempty"`
	Publish  []string `json:"publish,omitempty"`
	EnvNames []string `json:"env,omitempty"`
	Secrets  []string `json:"secrets,omitempty"`
	// Checks are the image's health checks (by service): deploy waits for each to be healthy.
	Checks []string `json:"health_checks,omitempty"`
	// Ref and Signers: where a pulled image came from and the trusted keys whose signatures
	// the host verified.
	Ref      string    `json:"ref,omitempty"`
	Signers  []string  `json:"signed_by,omitempty"`
	Deployed time.Time `json:"deployed"`
}

// App is a name deployed on the host: the revision that should run, and the one before it,
// which rollback puts back.
type App struct {
	Name       string    `json:"name"`
	Supervisor string    `json:"supervisor"`
	Unit       string    `json:"unit,omitempty"`
	Stopped    bool      `json:"stopped,omitempty"`
	Current    *Revision `json:"current,omitempty"`
	Previous   *Revision `json:"previous,omitempty"`
	Dir        string    `json:"dir"` // the runs' project directory (logs/, the data volume)
	// Started is when the agent last started the current revision (the host's clock): a guest
	// ps lists as started before it is a previous run of the name, whose record stays until
	// the new run takes the name (under systemd, after `systemctl restart` has returned).
	Started time.Time `json:"started,omitzero"`
}

// check makes a host's answer safe to use: each revision's digest is a SHA-256 (its start is
// printed), its text neutralised for the terminal.
func (a *App) check() error {
	n := guestlog.Neutralise
	a.Name, a.Supervisor, a.Unit, a.Dir = n(a.Name), n(a.Supervisor), n(a.Unit), n(a.Dir)
	for _, r := range []*Revision{a.Current, a.Previous} {
		if r == nil {
			continue
		}
		if err := validDigest(r.Digest); err != nil {
			return fmt.Errorf("revision %s: digest %w", n(r.ID), err)
		}
		r.ID, r.Net, r.Ref = n(r.ID), n(r.Net), n(r.Ref)
		for _, list := range [][]string{r.Publish, r.EnvNames, r.Secrets, r.Checks, r.Signers} {
			for i := range list {
				list[i] = n(list[i])
			}
		}
	}
	return nil
}

func (p *Prepared) check() error {
	p.Supervisor = guestlog.Neutralise(p.Supervisor)
	if p.App == nil {
		return nil
	}
	return p.App.check()
}

// hostDirs are where the agent keeps things on the host: state (images, records) on disk and
// run settings (environment, secrets) on tmpfs.
type hostDirs struct {
	State string // <XDG_STATE_HOME or ~/.local/state>/ukernel/deploy
	Run   string // a tmpfs directory, 0700
}

func openHostDirs() (hostDirs, error) {
	var d hostDirs
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return d, fmt.Errorf("the host's state directory: neither XDG_STATE_HOME nor HOME is set")
		}
		base = filepath.Join(home, ".local", "state")
	}
	d.State = filepath.Join(base, "ukernel", "deploy")
	for _, sub := range []string{"images", "apps"} {
		if err := os.MkdirAll(filepath.Join(d.State, sub), 0o700); err != nil {
			return d, err
		}
	}
	run, err := runDir()
	if err != nil {
		return d, err
	}
	d.Run = run
	return d, nil
}

// tmpfsMagic is statfs's f_type of tmpfs (linux/magic.h), ramfsMagic ramfs's.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// runDir is a directory for the deployments' run settings that lives in memory only: the
// user's runtime directory, else /run (root) or /dev/shm. One that is not tmpfs is refused:
// the secrets would reach a disk.
func runDir() (string, error) {
	var cands []string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		cands = append(cands, filepath.Join(d, "ukernel-deploy"))
	}
	if os.Getuid() == 0 {
		cands = append(cands, "/run/ukernel-deploy")
	}
	cands = append(cands, fmt.Sprintf("/dev/shm/ukernel-deploy-%d", os.Getuid()))
	var tried []string
	for _, c := range cands {
		if !isTmpfs(filepath.Dir(c)) {
			tried = append(tried, filepath.Dir(c))
			continue
		}
		if err := os.MkdirAll(c, 0o700); err != nil {
			return "", err
		}
		fi, err := os.Lstat(c)
		if err != nil {
			return "", err
		}
		if !fi.IsDir() || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			return "", fmt.Errorf("%s is not a directory of the deploying user", c)
		}
		if err := os.Chmod(c, 0o700); err != nil {
			return "", err
		}
		return c, nil
	}
	return "", fmt.Errorf("no tmpfs for the run settings (secrets never go to disk): none of %s is tmpfs; set XDG_RUNTIME_DIR to a tmpfs directory", strings.Join(tried, ", "))
}

func (d hostDirs) image(digest string) string {
	return filepath.Join(d.State, "images", digest+".img")
}
func (d hostDirs) appDir(name string) string { return filepath.Join(d.State, "apps", name) }
func (d hostDirs) record(name string) string {
	return filepath.Join(d.appDir(name), "deploy.json")
}
func (d hostDirs) revDir(name, rev string) string { return filepath.Join(d.Run, name, rev) }

// Agent does one operation on the host. exe is this ukernel binary.
type Agent struct {
	Exe     string
	dirs    hostDirs
	systemd *systemd // nil: no systemd as init
}

// RunAgent runs op with the request on stdin and writes the answer on stdout.
func RunAgent(ctx context.Context, exe, op string, args []string, stdin io.Reader, stdout io.Writer) error {
	dirs, err := openHostDirs()
	if err != nil {
		return err
	}
	a := &Agent{Exe: exe, dirs: dirs, systemd: detectSystemd()}
	var answer any
	switch op {
	case OpPutImage:
		if len(args) != 1 {
			return errors.New("put-image: expected DIGEST")
		}
		answer, err = a.putImage(args[0], stdin)
	case OpPrepare:
		var req Prepare
		if err = decode(stdin, &req); err == nil {
			answer, err = a.prepare(req)
		}
	case OpActivate:
		var req Activate
		if err = decode(stdin, &req); err != nil {
			break
		}
		if err = runstate.ValidateName(req.Name); err != nil {
			break
		}
		var release func()
		if release, err = a.lockApp(ctx, req.Name, op); err != nil {
			break
		}
		defer release()
		answer, err = a.activate(ctx, req)
	case OpRollback, OpStop, OpStatus:
		var req NameRequest
		if err = decode(stdin, &req); err != nil {
			break
		}
		if err = runstate.ValidateName(req.Name); err != nil {
			break
		}
		var release func()
		if release, err = a.lockApp(ctx, req.Name, op); err != nil {
			break
		}
		defer release()
		switch op {
		case OpRollback:
			answer, err = a.rollback(ctx, req.Name)
		case OpStop:
			answer, err = a.stop(ctx, req.Name)
		default:
			answer, err = a.load(req.Name)
		}
	default:
		return fmt.Errorf("unknown deploy agent operation %q (the host's ukernel differs from this one?)", op)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(answer)
}

// lockApp serialises the operations that change a deployment on the host: two deploys of one
// name never stop and start its guest at once.
func (a *Agent) lockApp(ctx context.Context, name, op string) (func(), error) {
	return filelock.Acquire(ctx, filepath.Join(a.dirs.appDir(name), ".lock"), "ukernel deploy ("+op+")", 2*time.Minute, nil)
}

func decode(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("deploy request: %w", err)
	}
	return nil
}

func validDigest(d string) error {
	if len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not a lowercase hex SHA-256", d)
	}
	return nil
}

func (a *Agent) prepare(req Prepare) (*Prepared, error) {
	if err := runstate.ValidateName(req.Name); err != nil {
		return nil, err
	}
	if err := validDigest(req.Digest); err != nil {
		return nil, err
	}
	p := &Prepared{Supervisor: SupervisorMonitor}
	if a.systemd != nil {
		p.Supervisor = SupervisorSystemd
	}
	// Present only once verified: put-image stores nothing else under the digest's name.
	if _, err := os.Stat(a.dirs.image(req.Digest)); err == nil {
		p.HasImage = true
	}
	app, err := a.load(req.Name)
	if err != nil {
		return nil, err
	}
	if app.Current != nil {
		p.App = app
	}
	return p, nil
}

// putPrefix names an image being received, in the images directory.
const putPrefix = ".put-"

// putImage stores the image read from r under its digest once the bytes match it.
func (a *Agent) putImage(digest string, r io.Reader) (*PutImage, error) {
	if err := validDigest(digest); err != nil {
		return nil, err
	}
	dst := a.dirs.image(digest)
	// Named for its owner: what a killed agent left (a connection cut mid-image, a reboot) is
	// removed by the next put, never kept beside the images.
	if _, err := workdir.Sweep(filepath.Dir(dst), putPrefix); err != nil {
		return nil, err
	}
	tmp, err := workdir.Create(filepath.Dir(dst), putPrefix)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("store the image: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return nil, fmt.Errorf("the image received (%d bytes) has digest sha256:%s, not sha256:%s: nothing stored", n, got, digest)
	}
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return nil, err
	}
	if err := atomicfile.Rename(tmp.Name(), dst); err != nil {
		return nil, err
	}
	return &PutImage{Digest: digest, Bytes: n}, nil
}

// verifyImage checks the stored image against its digest right before it starts.
func (a *Agent) verifyImage(digest string) (string, error) {
	p := a.dirs.image(digest)
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("image sha256:%s is not on the host: %w", digest, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return "", fmt.Errorf("image %s changed on the host: its digest is sha256:%s, not sha256:%s; deploy again to replace it", p, got, digest)
	}
	return p, nil
}

// checkImage verifies the image as inspect does (partitions, manifest, every artefact against
// its digest) and lists the services its health checks probe.
func checkImage(path string) ([]string, error) {
	im, err := image.Open(path)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	if err := im.Verify().Err(); err != nil {
		return nil, fmt.Errorf("the image on the host: %w", err)
	}
	var checks []string
	for _, h := range im.Manifest().Health {
		if !slices.Contains(checks, h.Service) {
			checks = append(checks, h.Service)
		}
	}
	sort.Strings(checks)
	return checks, nil
}

// checkTrust applies the host's own trust policy ([trust] in its ukernel config.toml) to a pulled
// image's signatures, as run does to an image pulled there: a policy that names the image's
// reference refuses it without a valid signature by a key the host trusts. An image that was
// not pulled (a local build) is not subject to it. It returns the keys that signed.
func checkTrust(digest string, rec *oci.Record) ([]string, error) {
	if rec == nil {
		return nil, nil
	}
	pm, err := oci.ParseManifest(rec.Manifest)
	if err != nil {
		return nil, err
	}
	if pm.Revision != digest {
		return nil, fmt.Errorf("the pull record sent describes image sha256:%s, not the one deployed (sha256:%s)", pm.Revision, digest)
	}
	cfg, err := userconfig.Load()
	if err != nil {
		return nil, err
	}
	rep, err := oci.CheckTrust(cfg, rec.Name, rec.Digest, rec.Manifest, rec.Signatures)
	if err != nil {
		return nil, fmt.Errorf("the host's trust policy: %w", err)
	}
	var signers []string
	for _, s := range rep.Signers {
		signers = append(signers, s.Key)
	}
	return signers, nil
}

func (a *Agent) load(name string) (*App, error) {
	b, err := os.ReadFile(a.dirs.record(name))
	if errors.Is(err, os.ErrNotExist) {
		return &App{Name: name, Dir: a.dirs.appDir(name)}, nil
	}
	if err != nil {
		return nil, err
	}
	var app App
	if err := json.Unmarshal(b, &app); err != nil {
		return nil, fmt.Errorf("deployment record %s: %w", a.dirs.record(name), err)
	}
	return &app, nil
}

func (a *Agent) save(app *App) error {
	b, err := json.MarshalIndent(app, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(a.dirs.record(app.Name), append(b, '\n'), 0o600)
}

// writeRunSettings puts a revision's environment and secrets in its run directory on tmpfs,
// each file 0600, where `ukernel run --env-file/--secret NAME=@FILE` reads them.
func (a *Agent) writeRunSettings(name string, rev *Revision, env map[string]string, secrets map[string][]byte) error {
	dir := a.dirs.revDir(name, rev.ID)
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return err
	}
	envFile, err := runenv.EnvFile(env)
	if err != nil {
		return err
	}
	if err := writePrivate(filepath.Join(dir, "env"), envFile); err != nil {
		return err
	}
	for _, n := range slices.Sorted(maps.Keys(secrets)) {
		if err := writePrivate(filepath.Join(dir, "secrets", n), secrets[n]); err != nil {
			return err
		}
	}
	return nil
}

func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// runArgs is the `ukernel run` command line of a revision (after the executable).
func (a *Agent) runArgs(app *App, rev *Revision) []string {
	args := []string{"-C", app.Dir, "run", "--name", app.Name, "--image", a.dirs.image(rev.Digest)}
	if rev.VCPU > 0 {
		args = append(args, "--vcpu", strconv.Itoa(rev.VCPU))
	}
	if rev.MemoryMB > 0 {
		args = append(args, "--memory", strconv.Itoa(rev.MemoryMB))
	}
	if rev.DataMB > 0 {
		args = append(args, "--data-mb", strconv.Itoa(rev.DataMB))
	}
	if rev.Net != "" {
		args = append(args, "--net", rev.Net)
	}
	for _, p := range rev.Publish {
		args = append(args, "--publish", p)
	}
	dir := a.dirs.revDir(app.Name, rev.ID)
	if len(rev.EnvNames) > 0 {
		args = append(args, "--env-file", filepath.Join(dir, "env"))
	}
	for _, s := range rev.Secrets {
		args = append(args, "--secret", s+"=@"+filepath.Join(dir, "secrets", s))
	}
	return args
}

func (a *Agent) activate(ctx context.Context, req Activate) (*App, error) {
	if err := runstate.ValidateName(req.Name); err != nil {
		return nil, err
	}
	if err := validDigest(req.Digest); err != nil {
		return nil, err
	}
	for _, p := range req.Publish {
		if _, _, err := project.ParsePublish(p); err != nil {
			return nil, fmt.Errorf("--publish %v", err)
		}
	}
	if req.Net != "" {
		if _, err := abi.ParseNet(req.Net); err != nil {
			return nil, fmt.Errorf("net: %w", err)
		}
	}
	if err := project.CheckDataMB(req.DataMB); err != nil {
		return nil, fmt.Errorf("data_mb %w", err)
	}
	for k, v := range req.Env {
		if strings.ContainsAny(k, "=\n\x00 \t") || strings.ContainsAny(v, "\n\x00") || strings.TrimSpace(v) != v {
			return nil, fmt.Errorf("environment variable %s: a name or value that an env file cannot carry (a newline, NUL or surrounding space)", k)
		}
	}
	for n := range req.Secrets {
		if err := project.ValidateSecretName(n); err != nil {
			return nil, err
		}
	}
	// Verified here, right before it starts: a file changed since it was stored is refused.
	imgPath, err := a.verifyImage(req.Digest)
	if err != nil {
		return nil, err
	}
	checks, err := checkImage(imgPath)
	if err != nil {
		return nil, err
	}
	signers, err := checkTrust(req.Digest, req.Pulled)
	if err != nil {
		return nil, err
	}
	app, err := a.load(req.Name)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	rev := &Revision{
		ID: now.Format("20060102T150405.000Z") + "-" + req.Digest[:12], Digest: req.Digest, Publish: req.Publish,
		VCPU: req.VCPU, MemoryMB: req.MemoryMB, DataMB: req.DataMB, Net: req.Net,
		EnvNames: slices.Sorted(maps.Keys(req.Env)), Secrets: slices.Sorted(maps.Keys(req.Secrets)), Checks: checks, Signers: signers, Deployed: now,
	}
	if req.Pulled != nil {
		rev.Ref = req.Pulled.Ref
	}
	rev.ID = strings.ReplaceAll(rev.ID, ".", "")
	if err := os.MkdirAll(app.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := a.writeRunSettings(app.Name, rev, req.Env, req.Secrets); err != nil {
		return nil, fmt.Errorf("run settings: %w", err)
	}
	if app.Current != nil {
		if err := a.stopGuest(ctx, app); err != nil {
			return nil, err
		}
	}
	if app.Current != nil && app.Current.ID != rev.ID {
		app.Previous = app.Current
	}
	app.Current = rev
	app.Supervisor = SupervisorMonitor
	if a.systemd != nil {
		app.Supervisor = SupervisorSystemd
	}
	// Recorded before the start: a start that fails leaves a record rollback can use.
	if err := a.save(app); err != nil {
		return nil, err
	}
	if err := a.startGuest(ctx, app); err != nil {
		return app, err
	}
	a.collect()
	return app, a.save(app)
}

// rollback puts the previous revision back; the one it replaces becomes the previous (a second
// rollback returns to it).
func (a *Agent) rollback(ctx context.Context, name string) (*App, error) {
	app, err := a.load(name)
	if err != nil {
		return nil, err
	}
	if app.Previous == nil {
		return nil, fmt.Errorf("%s has no previous revision on this host to roll back to", name)
	}
	if _, err := os.Stat(a.dirs.revDir(name, app.Previous.ID)); err != nil {
		return nil, fmt.Errorf("the run settings of %s's previous revision %s are gone from the host's tmpfs (it restarted?): deploy that image again", name, app.Previous.ID)
	}
	if _, err := a.verifyImage(app.Previous.Digest); err != nil {
		return nil, err
	}
	if err := a.stopGuest(ctx, app); err != nil {
		return nil, err
	}
	app.Current, app.Previous = app.Previous, app.Current
	if err := a.save(app); err != nil {
		return nil, err
	}
	if err := a.startGuest(ctx, app); err != nil {
		return app, err
	}
	return app, a.save(app)
}

func (a *Agent) stop(ctx context.Context, name string) (*App, error) {
	app, err := a.load(name)
	if err != nil {
		return nil, err
	}
	if app.Current == nil {
		return nil, fmt.Errorf("nothing named %s is deployed on this host", name)
	}
	if err := a.stopGuest(ctx, app); err != nil {
		return nil, err
	}
	app.Stopped = true
	return app, a.save(app)
}

// startGuest starts app's current revision under its supervisor.
func (a *Agent) startGuest(ctx context.Context, app *App) error {
	app.Stopped, app.Started = false, time.Now().UTC()
	args := a.runArgs(app, app.Current)
	if app.Supervisor == SupervisorSystemd {
		if a.systemd == nil {
			return fmt.Errorf("%s was deployed under systemd, which is not this host's init any more: deploy it again", app.Name)
		}
		unit := UnitFile(UnitSpec{Name: app.Name, Exe: a.Exe, RunArgs: args, Env: unitEnv(), User: a.systemd.user})
		app.Unit = UnitName(app.Name)
		return a.systemd.start(ctx, app.Unit, unit)
	}
	// run -d returns once the guest shows a sign of life; its monitor restarts it on failure.
	args = append(args, "-d", "--restart", launch.RestartOnFailure)
	cmd := exec.CommandContext(ctx, a.Exe, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start %s: %v: %s", app.Name, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// stopGuest stops what runs for app, whichever supervisor it has.
func (a *Agent) stopGuest(ctx context.Context, app *App) error {
	if app.Supervisor == SupervisorSystemd && a.systemd != nil {
		return a.systemd.stop(ctx, UnitName(app.Name))
	}
	store, err := runstate.Open()
	if err != nil {
		return err
	}
	if _, err := store.Load(app.Name); err != nil {
		return nil // never started, or its record was removed
	}
	sctx, cancel := context.WithTimeout(ctx, launch.DefaultStopTimeout+15*time.Second)
	defer cancel()
	if _, err := launch.StopGuest(sctx, store, app.Name, launch.DefaultStopTimeout, nil); err != nil {
		return fmt.Errorf("stop the running %s: %w", app.Name, err)
	}
	return nil
}

// collect removes the images and run settings no deployment's current or previous revision
// uses any more.
func (a *Agent) collect() {
	keepImg := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(a.dirs.State, "apps"))
	for _, e := range entries {
		app, err := a.load(e.Name())
		if err != nil {
			return // an unreadable record: keep everything
		}
		keepRev := map[string]bool{}
		for _, r := range []*Revision{app.Current, app.Previous} {
			if r != nil {
				keepImg[r.Digest], keepRev[r.ID] = true, true
			}
		}
		revs, _ := os.ReadDir(filepath.Join(a.dirs.Run, app.Name))
		for _, r := range revs {
			if !keepRev[r.Name()] {
				os.RemoveAll(filepath.Join(a.dirs.Run, app.Name, r.Name()))
			}
		}
	}
	imgs, _ := os.ReadDir(filepath.Join(a.dirs.State, "images"))
	var drop []string
	for _, e := range imgs {
		d, ok := strings.CutSuffix(e.Name(), ".img")
		// A fresh image may be another deployment's, stored but not yet activated.
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Hour {
			continue
		}
		if ok && !keepImg[d] {
			drop = append(drop, e.Name())
		}
	}
	sort.Strings(drop)
	for _, n := range drop {
		os.Remove(filepath.Join(a.dirs.State, "images", n))
	}
}

// unitEnv is the environment a unit's ukernel needs to find the same state as this agent (and
// so `ukernel ps` over SSH): systemd starts units with an environment of its own.
func unitEnv() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"HOME", "XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"} {
		if v := os.Getenv(k); v != "" {
			env[k] = v
		}
	}
	return env
}

func isTmpfs(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && (st.Type == tmpfsMagic || st.Type == ramfsMagic)
}
