package runstate

import (
	"fmt"
	"path/filepath"

	"github.com/ukernel-dev/ukernel/internal/runlog"
)

// A guest's status, as ps shows it.
const (
	StatusStarting = "starting" // its ukernel is starting it; no VMM yet
	StatusRunning  = "running"
	StatusExited   = "exited"
)

// Guest is a recorded guest and what became of it.
type Guest struct {
	*State
	Status string
	// ExitCode is the code an exited guest reported; Reason says why there is none.
	ExitCode *int
	Reason   string
	// Health is a running guest's latest result of each health check, by service.
	Health map[string]string
}

// Guests returns every recorded guest, sorted by name, with its status. A guest whose VMM is
// gone without anyone having recorded how it ended (its ukernel was killed) is recorded as
// finished here, with the exit code its run's events reported.
func (s *Store) Guests() ([]Guest, error) {
	states, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []Guest
	for _, st := range states {
		g := Guest{State: st, Status: StatusRunning}
		run := runlog.Run{ID: st.RunID, Dir: st.RunDir}
		switch {
		case st.Exited:
			g.Status, g.ExitCode, g.Reason = StatusExited, st.ExitCode, st.Reason
			if g.ExitCode == nil && g.Reason == "" {
				g.Reason = "no exit code reported"
			}
		case st.Live() && st.Handle.PID == 0:
			g.Status = StatusStarting
		case st.Live():
			g.Health = runlog.ReadHealth(run)
		default:
			g.Status = StatusExited
			res := runlog.Outcome{Reason: "never started"}
			if st.RunDir != "" {
				res = runlog.ReadOutcome(run)
			}
			if res.Reported {
				g.ExitCode = &res.Code
			} else {
				g.Reason = "no exit code reported"
			}
			if err := s.Finish(st, res); err != nil {
				return nil, fmt.Errorf("record the finished guest %s: %w", st.Name, err)
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// Started returns the guest name and its run, which must have started.
func (s *Store) Started(name string) (*State, runlog.Run, error) {
	if err := ValidateName(name); err != nil {
		return nil, runlog.Run{}, err
	}
	st, err := s.Load(name)
	if err != nil {
		return nil, runlog.Run{}, err
	}
	if st.RunDir == "" {
		return nil, runlog.Run{}, fmt.Errorf("guest %q has not started yet", name)
	}
	return st, runlog.Run{ID: st.RunID, Dir: st.RunDir}, nil
}

// GuestOf returns the guest whose run is r, if it is still recorded.
func (s *Store) GuestOf(r runlog.Run) *State {
	states, err := s.List()
	if err != nil {
		return nil
	}
	for _, st := range states {
		if st.RunDir != "" && filepath.Clean(st.RunDir) == filepath.Clean(r.Dir) {
			return st
		}
	}
	return nil
}
