// Package runstate is the registry of guests on this host: one JSON file per guest in the user's
// runtime directory (its VMM, image, network, run directory, owner; a finished guest's exit),
// with the sockets, pid file and config drive path each guest uses there, and the cleaning of
// what a killed ukernel left. A run's logs are package runlog.
package runstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/filelock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/runlog"
	"github.com/ukernel-dev/ukernel/internal/vmm"
)

// State is what is known about one running guest.
type State struct {
	Name        string     `json:"name"`
	Handle      vmm.Handle `json:"vmm"`
	Accel       string     `json:"accelerator"`
	Image       string     `json:"image"`
	ImageDigest string     `json:"image_digest"`
	Net         string     `json:"net"`
	Ports       []string   `json:"ports,omitempty"` // HOST:GUEST on 127.0.0.1
	RunID       string     `json:"run_id"`
	RunDir      string     `json:"run_dir"`
	ConfigDrive string     `json:"config_drive,omitempty"`
	Started     time.Time  `json:"started"`
	ProjectDir  string     `json:"project_dir"`
	// Template and Revision name the template revision the guest runs (run --template).
	Template string `json:"template,omitempty"`
	Revision string `json:"revision,omitempty"`
	Detached bool   `json:"detached"`
	// Owner is the ukernel process that started the guest (and may still wait for it).
	Owner int `json:"owner_pid"`
	// OwnerStart is the owner's start time (clock ticks since boot), which tells the owner
	// from a later process that reuses its pid.
	OwnerStart uint64 `json:"owner_start,omitempty"`
	// The record of a finished guest, kept for ps -a and logs until `ukernel rm` or a new run
	// of the same name.
	Exited   bool      `json:"exited,omitempty"`
	ExitCode *int      `json:"exit_code,omitempty"` // the code the guest reported, if it did
	Reason   string    `json:"reason,omitempty"`    // why it has no code, or a guest error
	Finished time.Time `json:"finished,omitzero"`
}

// Dir returns the state directory: $XDG_RUNTIME_DIR/ukernel, else <tmp>/ukernel-<uid>.
func Dir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "ukernel")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("ukernel-%d", os.Getuid()))
}

// Store is a state directory.
type Store struct{ Dir string }

// Open returns the store at Dir(), created 0700 (it holds the config drives with secrets).
func Open() (*Store, error) { return OpenAt(Dir()) }

// OpenAt returns the store at dir.
func OpenAt(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	// Not followed: a link planted in a shared temporary directory would lead the config drives
	// elsewhere.
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state directory %s is not a directory (%s): remove it, or set XDG_RUNTIME_DIR to a directory of your own", dir, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("state directory %s belongs to uid %d, not to you (uid %d)", dir, st.Uid, os.Getuid())
	}
	// It holds the config drives with secrets and the guests' control sockets: only its owner
	// may enter it, whoever created it and with whatever umask.
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("state directory %s is mode %04o and cannot be made 0700: %w", dir, fi.Mode().Perm(), err)
		}
	}
	s := &Store{Dir: dir}
	if err := s.sweep(); err != nil {
		return nil, err
	}
	return s, nil
}

// sweep cleans what dead ukernel processes left: a guest whose owner (the foreground run or the
// monitor) died without recording how it ended is recorded as finished, which removes its config
// drive (with the secrets), sockets and pid file, and kills a VMM that was never recorded. The
// config drive of a guest whose owner died while its VMM runs on goes too: only the start reads
// it. Each command that opens the store sweeps, so nothing waits for a `ps`.
func (s *Store) sweep() error {
	states, err := s.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range states {
		if st.Exited || st.OwnerAlive() {
			continue
		}
		if st.Live() {
			if err := os.Remove(s.ConfigDrive(st.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		out := runlog.Outcome{Reason: "never started"}
		if st.RunDir != "" {
			out = runlog.ReadOutcome(runlog.Run{ID: st.RunID, Dir: st.RunDir})
		}
		if err := s.Finish(st, out); err != nil {
			errs = append(errs, fmt.Errorf("record the finished guest %s: %w", st.Name, err))
		}
	}
	return errors.Join(errs...)
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidateName checks a guest name (it names files in the state directory).
func ValidateName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("invalid guest name %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Paths of a guest's files in the store.
func (s *Store) statePath(name string) string { return filepath.Join(s.Dir, name+".json") }

// ControlSocket is the guest's control channel socket.
func (s *Store) ControlSocket(name string) string { return filepath.Join(s.Dir, name+".ctl") }

// ExecSocket is the prefix of the guest's exec port sockets (QEMU adds the port's number; each
// has a lock file beside it, qemu.DialExec).
func (s *Store) ExecSocket(name string) string { return filepath.Join(s.Dir, name+".exec") }

// APISocket is the VMM's API socket (QMP).
func (s *Store) APISocket(name string) string { return filepath.Join(s.Dir, name+".qmp") }

// OutputSocket is where the host listens for the guest's output channel.
func (s *Store) OutputSocket(name string) string { return filepath.Join(s.Dir, name+".out") }

// ConfigDrive is the guest's run-time config drive.
func (s *Store) ConfigDrive(name string) string { return filepath.Join(s.Dir, name+".config") }

// ErrRunning is returned by Reserve when a live guest has the name.
type ErrRunning struct{ State *State }

func (e *ErrRunning) Error() string {
	return fmt.Sprintf("a guest named %q is already running (pid %d, started %s); stop it with `ukernel stop %s` or pick another --name",
		e.State.Name, e.State.Handle.PID, e.State.Started.Format(time.RFC3339), e.State.Name)
}

// Reserve claims name for a guest about to start, with a placeholder state owned by this
// process. A stale entry of the same name is cleaned first; a live one is an *ErrRunning.
// Reserve, Release and Abandon hold the store's lock, so two runs can never both take a name
// and a release never removes the state of a run that took the name meanwhile.
func (s *Store) Reserve(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := s.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	if st, err := s.Load(name); err == nil && st.Live() {
		return &ErrRunning{State: st}
	}
	if err := s.clean(name); err != nil {
		return err
	}
	// Written whole and linked into place, so a reader never sees a half-written placeholder.
	start, _ := ProcessStart(os.Getpid())
	b, _ := json.Marshal(State{Name: name, Owner: os.Getpid(), OwnerStart: start, Started: time.Now()})
	tmp, err := os.CreateTemp(s.Dir, "."+name+".reserve*")
	if err != nil {
		return fmt.Errorf("state of %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("state of %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state of %s: %w", name, err)
	}
	if err := os.Link(tmp.Name(), s.statePath(name)); err != nil {
		return fmt.Errorf("state of %s: %w", name, err)
	}
	return nil
}

// LockFile is the store's lock. One lock for every name keeps it simple: the critical sections
// are a few file operations. It is never removed (removing an flocked file races with lockers).
const LockFile = ".lock"

// lockWait bounds the wait for the store's lock: its holders keep it for a few file operations
// (and at most seconds for an orphaned VMM to go), so a holder that keeps it longer is stopped
// or stuck, and is named in the error.
var lockWait = 30 * time.Second

// lock takes the store's lock for name's state (an flock, released if the process dies).
func (s *Store) lock(name string) (func(), error) {
	release, err := filelock.Acquire(context.Background(), filepath.Join(s.Dir, LockFile), "ukernel (state of "+name+")", lockWait, nil)
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", name, err)
	}
	return release, nil
}

// Save records st (atomically).
func (s *Store) Save(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.statePath(st.Name), append(b, '\n'), 0o600)
}

// Load reads the state of name.
func (s *Store) Load(name string) (*State, error) {
	b, err := os.ReadFile(s.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no guest named %q (see `ukernel ps`)", name)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state file %s: %w", s.statePath(name), err)
	}
	if st.Name == "" {
		st.Name = name
	}
	return &st, nil
}

// Live reports whether the guest runs, or is being started by a ukernel process that still runs
// (however long the start takes: formatting a large data volume can take minutes).
func (st *State) Live() bool {
	if st.Exited {
		return false
	}
	if st.Handle.PID > 0 {
		return st.Handle.Alive()
	}
	if st.Owner <= 0 || syscall.Kill(st.Owner, 0) != nil {
		return false
	}
	if st.OwnerStart == 0 { // recorded by an older ukernel: trust a live pid for a minute
		return time.Since(st.Started) < time.Minute
	}
	start, ok := ProcessStart(st.Owner)
	return ok && start == st.OwnerStart
}

// OwnerAlive reports whether the ukernel process that started the guest (its monitor, or the
// foreground run) still runs: it records the guest's last output after the VMM is gone.
func (st *State) OwnerAlive() bool {
	if st.Owner <= 0 || syscall.Kill(st.Owner, 0) != nil {
		return false
	}
	start, ok := ProcessStart(st.Owner)
	return ok && (st.OwnerStart == 0 || start == st.OwnerStart)
}

// Recording reports whether the run of st may still get output: its guest runs, or the process
// that owns it has not recorded its end yet (it records the rest of the output first). A run
// that ended is done even while its owner runs on (a detached guest's monitor restarting it
// under --restart), and so is one whose record was removed or taken by a newer run.
func (s *Store) Recording(st *State) bool {
	cur, err := s.Load(st.Name)
	if err != nil || cur.RunID != st.RunID {
		return false
	}
	return cur.Live() || (!cur.Exited && cur.OwnerAlive())
}

// ProcessStart returns when process pid started, in clock ticks since boot (field 22 of
// /proc/PID/stat), and whether it could be read.
func ProcessStart(pid int) (uint64, bool) {
	f, ok := vmm.ProcStat(pid)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// List returns every recorded guest, sorted by name.
func (s *Store) List() ([]*State, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", s.Dir, err)
	}
	var out []*State
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		st, err := s.Load(name)
		if err != nil {
			continue // a file vanished meanwhile, or is not ours
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// TemplateRevisions returns the revisions of template name that its guests boot from: live
// ones, and finished ones whose owner still runs (a detached guest's monitor boots the same
// revision again after its restart delay). A build's prune leaves them (template.Store.Prune).
func (s *Store) TemplateRevisions(name string) ([]string, error) {
	states, err := s.List()
	if err != nil {
		return nil, err
	}
	var revs []string
	for _, st := range states {
		if st.Template == name && st.Revision != "" && (st.Live() || st.OwnerAlive()) {
			revs = append(revs, st.Revision)
		}
	}
	return revs, nil
}

// PIDFile is where the backend records the VMM's pid while it starts (vmm.Spec.PIDFile).
func (s *Store) PIDFile(name string) string { return filepath.Join(s.Dir, name+".pid") }

// clean removes everything the store holds for name: state, sockets, config drive and pid file.
// A VMM still running from that pid file was never recorded in a state (its ukernel died while
// it started): nothing else can reach it, so it is killed rather than left running unmanaged.
// The caller holds the name's lock.
func (s *Store) clean(name string) error {
	var errs []error
	if b, err := os.ReadFile(s.PIDFile(name)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			h := vmm.Handle{PID: pid, APISocket: s.APISocket(name)}
			if h.Alive() {
				_ = syscall.Kill(-pid, syscall.SIGKILL) // its own process group
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				if err := vmm.WaitGone(ctx, h); err != nil {
					errs = append(errs, fmt.Errorf("orphaned VMM (pid %d) of %s did not exit: %w", pid, name, err))
				}
				cancel()
			}
		}
	}
	// A config drive a killed run was still writing holds its secrets too.
	if _, err := atomicfile.Sweep(s.ConfigDrive(name)); err != nil {
		errs = append(errs, err)
	}
	paths := []string{s.ConfigDrive(name), s.ControlSocket(name), s.APISocket(name), s.OutputSocket(name), s.PIDFile(name), s.statePath(name)}
	for _, pattern := range []string{"[0-9]", "[0-9].flock"} {
		m, _ := filepath.Glob(s.ExecSocket(name) + pattern)
		paths = append(paths, m...)
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Finish turns the state of st's guest, once it is gone, into the record of a finished guest
// with out (its sockets, pid file and config drive go), unless the name now belongs to another
// run (a newer reservation or state of the same name) or is already finished.
func (s *Store) Finish(st *State, out runlog.Outcome) error {
	unlock, err := s.lock(st.Name)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.Load(st.Name)
	if err != nil || cur.Exited || cur.Owner != st.Owner || cur.RunID != st.RunID || !cur.Started.Equal(st.Started) {
		return nil
	}
	if err := s.clean(st.Name); err != nil {
		return err
	}
	cur.Exited, cur.Finished, cur.Reason, cur.ExitCode = true, time.Now(), out.Reason, nil
	if out.Reported {
		code := out.Code
		cur.ExitCode = &code
	}
	return s.Save(cur)
}

// Remove deletes the record of the guest name, which must not be running.
func (s *Store) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := s.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.Load(name)
	if err != nil {
		return err
	}
	if st.Live() {
		return fmt.Errorf("guest %q is running; stop it first (`ukernel stop %s`)", name, name)
	}
	// A restored guest's own copy of its snapshot's data volume goes with its record.
	if err := removeRestoredData(st.ProjectDir, name); err != nil {
		return err
	}
	return s.clean(name)
}

func removeRestoredData(projectDir, name string) error {
	if projectDir == "" {
		return nil
	}
	if err := os.Remove(RestoredData(projectDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// RestoredData is where a guest restored from a snapshot under name keeps its copy of the
// snapshot's data volume, in its project directory: its writes are its own, kept after it ends,
// until `ukernel rm` removes its record.
func RestoredData(projectDir, name string) string {
	return filepath.Join(projectDir, project.StateDir, "restored", name+".img")
}

// RemoveFinished removes the record of st's guest once it has finished, unless a new run has
// taken the name meanwhile: for guests nobody lists afterwards (perf's boots).
// A restored guest's copy of its snapshot's data volume goes too: no record is left to rm it.
func (s *Store) RemoveFinished(st *State) error {
	unlock, err := s.lock(st.Name)
	if err != nil {
		return err
	}
	defer unlock()
	if cur, err := s.Load(st.Name); err == nil && (cur.RunID != st.RunID || cur.Owner != st.Owner || cur.Live()) {
		return nil
	}
	return errors.Join(removeRestoredData(st.ProjectDir, st.Name), s.clean(st.Name))
}

// Abandon removes the state of a guest this process reserved but failed to start.
func (s *Store) Abandon(name string) error {
	return s.cleanIf(name, func(cur *State) bool { return cur.Owner == os.Getpid() })
}

// cleanIf cleans name under its lock when its current state satisfies mine, or when it has no
// readable state (then nothing live owns the name: Reserve writes the state first).
func (s *Store) cleanIf(name string, mine func(cur *State) bool) error {
	unlock, err := s.lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	if cur, err := s.Load(name); err == nil && !mine(cur) {
		return nil
	}
	return s.clean(name)
}

// stopRequest marks a guest that `ukernel stop` stopped: its monitor does not restart it.
func (s *Store) stopRequest(name string) string { return filepath.Join(s.Dir, name+".stop") }

// RequestStop records that name is being stopped on purpose.
func (s *Store) RequestStop(name string) error {
	return os.WriteFile(s.stopRequest(name), nil, 0o600)
}

// StopRequested reports whether a stop of name was requested since its monitor started.
func (s *Store) StopRequested(name string) bool {
	_, err := os.Stat(s.stopRequest(name))
	return err == nil
}

// ClearStopRequest forgets a stop request of name.
func (s *Store) ClearStopRequest(name string) { os.Remove(s.stopRequest(name)) }
