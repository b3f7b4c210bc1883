// Package runlog is a run's directory under a project's logs/ (logs/runs/<id>/): its files
// (console, events, output, the VMM's log, run.json), the link to the latest run, and what a
// finished run's events and console say about how it ended.
package runlog

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/guestlog"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// Files of a run directory.
const (
	ConsoleFile = "console.log"
	EventsFile  = "events.jsonl"
	VMMLogFile  = "vmm.log"
	InfoFile    = "run.json"
	OutputFile  = "output.jsonl" // the workload's output and the console's lines (internal/guestlog)
)

// Run is one run's directory, logs/runs/<id>/ in the project.
type Run struct {
	ID  string
	Dir string
}

// Console is the run's serial console log.
func (r Run) Console() string { return filepath.Join(r.Dir, ConsoleFile) }

// Events is the run's event stream.
func (r Run) Events() string { return filepath.Join(r.Dir, EventsFile) }

// VMMLog is the VMM's own stderr.
func (r Run) VMMLog() string { return filepath.Join(r.Dir, VMMLogFile) }

// Output is the run's output log.
func (r Run) Output() string { return filepath.Join(r.Dir, OutputFile) }

// Info is what a run directory records about its run, for the commands that read it later.
type Info struct {
	Name     string   `json:"name"`
	Image    string   `json:"image"`
	Services []string `json:"services"` // the image's services, in order
}

// WriteInfo records info in the run directory.
func (r Run) WriteInfo(info Info) error {
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(r.Dir, InfoFile), append(b, '\n'), 0o644)
}

// ReadInfo reads what WriteInfo recorded.
func (r Run) ReadInfo() (Info, error) {
	var info Info
	b, err := os.ReadFile(filepath.Join(r.Dir, InfoFile))
	if err != nil {
		return info, fmt.Errorf("run %s: %w", r.ID, err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("%s: %w", filepath.Join(r.Dir, InfoFile), err)
	}
	return info, nil
}

// NewRun creates logs/runs/<id>/ under projectDir, with an id that sorts by start time, and
// points logs/console.log at its console.
func NewRun(projectDir string, now time.Time) (Run, error) {
	r, err := NewSideRun(projectDir, now)
	if err != nil {
		return Run{}, err
	}
	if err := r.MakeLatest(projectDir); err != nil {
		return Run{}, err
	}
	return r, nil
}

// MakeLatest points the project's logs/console.log at r's console.
func (r Run) MakeLatest(projectDir string) error {
	// Replace the link atomically: a reader sees the old or the new run, never none.
	return atomicfile.Symlink(filepath.Join(runsSub, r.ID, ConsoleFile), LatestLink(projectDir))
}

// NewSideRun creates a run directory as NewRun does but leaves the project's latest run as it
// is: perf's boots must not take the place of the user's last run in logs and trace.
func NewSideRun(projectDir string, now time.Time) (Run, error) {
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return Run{}, err
	}
	id := now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(rnd[:])
	r := Run{ID: id, Dir: filepath.Join(runsDir(projectDir), id)}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return Run{}, fmt.Errorf("run directory: %w", err)
	}
	for _, f := range []string{r.Console(), r.Events()} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return Run{}, err
		}
	}
	return r, nil
}

// Find returns the run called id in the project, or the latest run when id is empty.
func Find(projectDir, id string) (Run, error) {
	if id == "" {
		return LatestRun(projectDir)
	}
	dir := filepath.Join(runsDir(projectDir), id)
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return Run{ID: id, Dir: dir}, nil
	}
	runs, _ := os.ReadDir(runsDir(projectDir))
	var ids []string
	for _, r := range runs {
		if r.IsDir() {
			ids = append(ids, r.Name())
		}
	}
	if len(ids) == 0 {
		return Run{}, fmt.Errorf("run %q not found: %s has no runs yet; run `ukernel run` first", id, projectDir)
	}
	if len(ids) > 5 {
		ids = ids[len(ids)-5:]
	}
	return Run{}, fmt.Errorf("run %q not found in %s; recent runs: %s", id, runsDir(projectDir), strings.Join(ids, ", "))
}

// runsDir holds a project's run directories.
func runsDir(projectDir string) string { return filepath.Join(projectDir, project.LogsDir, runsSub) }

const runsSub = "runs"

// LatestLink is the link to the latest run's console, logs/console.log, in projectDir.
func LatestLink(projectDir string) string { return filepath.Join(projectDir, LatestRel()) }

// LatestRun returns the run logs/console.log points at.
func LatestRun(projectDir string) (Run, error) {
	link := LatestLink(projectDir)
	target, err := os.Readlink(link)
	if err != nil {
		return Run{}, fmt.Errorf("no run recorded in %s (no %s): run `ukernel run` first", projectDir, link)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	dir := filepath.Dir(target)
	return Run{ID: filepath.Base(dir), Dir: dir}, nil
}

// Outcome is how a finished run ended.
type Outcome struct {
	Code     int    // the workload's exit code, or 125
	Reported bool   // the guest reported Code
	Started  bool   // the workload (entry or a service) started
	Reason   string // why ukernel failed the run, or a guest error next to a reported code
}

// ExitNoReport is the exit code of a run whose guest reported none (ukernel's own failure).
const ExitNoReport = 125

// ReadOutcome reads a finished run's events and console: the code of the last poweroff or
// entry exit event; without one, 125 with the reason (an error event, a kernel panic, or none).
func ReadOutcome(r Run) Outcome {
	var code *int
	var guestErr, abiErr string
	started := false
	eachEvent(r, func(ev abi.Event) {
		switch ev.Type {
		case abi.EventEntryStart, abi.EventServiceStart:
			started = true
		case abi.EventPowerOff, abi.EventEntryExit:
			if ev.Code != nil {
				code = ev.Code
			}
		case abi.EventError:
			guestErr = ev.Message
		case abi.EventHello:
			if err := abi.Compatible(ev.ABI); err != nil {
				abiErr = "guest init: " + err.Error()
			}
		}
	})
	reason := guestErr
	if reason == "" {
		reason = abiErr
	}
	if code != nil {
		return Outcome{Code: *code, Reported: true, Started: started, Reason: reason}
	}
	if reason == "" {
		if line := panicLine(r.Console()); line != "" {
			reason = "kernel panic: " + line
		}
	}
	if reason == "" {
		reason = "guest stopped without reporting an exit code"
	}
	return Outcome{Code: ExitNoReport, Started: started, Reason: reason + "; see " + r.Rel(ConsoleFile)}
}

// ConsoleTail returns the last n lines of the run's console, for a guest that failed before its
// workload started (the kernel's panic, init's error), or "" when it is empty.
func ConsoleTail(r Run, n int) string {
	b := guestlog.TailBytes(r.Console(), consoleTailBytes)
	text := strings.TrimSpace(strings.ReplaceAll(string(b), "\r", ""))
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Rel names file of the run's directory (the directory itself when file is "") relative to the
// project, as messages show it.
func (r Run) Rel(file string) string {
	return filepath.Join(project.LogsDir, runsSub, r.ID, file)
}

// LatestRel is the latest run's console link relative to the project: logs/console.log.
func LatestRel() string { return filepath.Join(project.LogsDir, ConsoleFile) }

// consoleTailBytes is how much of a console's end is read for its last lines or a panic: a
// panic's first line and its trace fit many times over, and a console of any size costs the
// same.
const consoleTailBytes = 256 << 10

func panicLine(console string) string {
	b := guestlog.TailBytes(console, consoleTailBytes)
	i := bytes.Index(b, []byte("Kernel panic"))
	if i < 0 {
		return ""
	}
	line, _, _ := bytes.Cut(b[i:], []byte("\n"))
	return strings.TrimSpace(string(line))
}

// ReadHealth returns the latest health status of each service from a run's events.
func ReadHealth(r Run) map[string]string {
	var h map[string]string
	eachEvent(r, func(ev abi.Event) {
		if ev.Type != abi.EventHealth {
			return
		}
		if h == nil {
			h = map[string]string{}
		}
		h[ev.Name] = ev.Status
	})
	return h
}

// eachEvent calls fn with each event of r in order, a line at a time: memory stays flat
// whatever the events' size.
func eachEvent(r Run, fn func(abi.Event)) {
	f, err := os.Open(r.Events())
	if err != nil {
		return
	}
	defer f.Close()
	guestlog.EachLine(f, func(line []byte) error {
		var ev abi.Event
		if json.Unmarshal(line, &ev) == nil {
			fn(ev)
		}
		return nil
	})
}

// Limits are the bounds of the logs of a run of the project in dir: its [logs], or guestlog's
// defaults (also for an image run outside a project).
func Limits(dir string) (guestlog.Limits, error) {
	if _, err := os.Stat(filepath.Join(dir, project.ConfigFile)); err != nil {
		return guestlog.DefaultLimits, nil
	}
	c, err := project.Load(dir)
	if err != nil {
		return guestlog.Limits{}, err
	}
	size, err := c.Logs.MaxSizeBytes()
	if err != nil {
		return guestlog.Limits{}, err
	}
	return guestlog.Limits{MaxSize: size, MaxFiles: c.Logs.MaxFiles}.OrDefault(), nil
}
