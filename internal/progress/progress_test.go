package progress

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Screen renders what a terminal shows for the bytes written to it: "\r" returns to the start
// of the line, "\x1b[K" erases to its end, "\n" starts a new line.
func Screen(out string) []string {
	lines := []string{""}
	col := 0
	for i := 0; i < len(out); i++ {
		cur := &lines[len(lines)-1]
		switch {
		case out[i] == '\n':
			lines = append(lines, "")
			col = 0
		case out[i] == '\r':
			col = 0
		case strings.HasPrefix(out[i:], "\x1b[K"):
			*cur = (*cur)[:col]
			i += 2
		default:
			if col < len(*cur) {
				*cur = (*cur)[:col] + string(out[i]) + (*cur)[col+1:]
			} else {
				*cur += string(out[i])
			}
			col++
		}
	}
	return lines
}

// syncBuffer is a bytes.Buffer a ticking step may write to from its goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPlainLines: off a terminal each step that did something is one final line with its
// elapsed time, a step with nothing to do is none, other lines pass through, bars never show.
func TestPlainLines(t *testing.T) {
	var out bytes.Buffer
	w := New(&out, false)
	w.Start("Locking").Skip()
	s := w.Start("Packing")
	w.Printf("Downloaded linux-image (85.0 MB in 2.1s)")
	w.Bar("linux-image [####      ] 20/85 MB")
	s.Done("")
	w.Start("Starting VM").Fail()
	got := out.String()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "Downloaded linux-image (85.0 MB in 2.1s)" ||
		!strings.HasPrefix(lines[1], "Packing: done (") || !strings.HasSuffix(lines[1], "ms)") ||
		!strings.HasPrefix(lines[2], "Starting VM: failed after ") {
		t.Errorf("plain output:\n%s", got)
	}
	if strings.ContainsAny(got, "\r\x1b") || strings.Contains(got, "Locking") || strings.Contains(got, "####") {
		t.Errorf("plain output has terminal controls, a skipped step or a bar: %q", got)
	}
}

// TestTerminal: on a terminal the running step and a download's bar share one live line that
// other lines scroll above; when the step ends only finished lines are left, no bar.
func TestTerminal(t *testing.T) {
	var out syncBuffer
	w := New(&out, true)
	s := w.Start("Building")
	w.Bar("python3.11 [##########          ] 10.0 MB/30.0 MB")
	screen := Screen(out.String())
	if live := screen[len(screen)-1]; !strings.HasPrefix(live, "Building... ") || !strings.HasSuffix(live, "10.0 MB/30.0 MB") {
		t.Errorf("live line %q, want the step and its bar", live)
	}
	w.Printf("Downloaded python3.11 (30.0 MB in 1.2s)")
	time.Sleep(450 * time.Millisecond) // the elapsed time ticks
	w.Bar("")
	s.Done("")
	w.Start("Packing").Skip()
	screen = Screen(out.String())
	want := []string{"Downloaded python3.11 (30.0 MB in 1.2s)", "", ""}
	if len(screen) != 3 || screen[0] != want[0] || !strings.HasPrefix(screen[1], "Building: done (") || screen[2] != "" {
		t.Errorf("screen after the steps:\n%q", screen)
	}
	ticked := false
	for _, m := range regexp.MustCompile(`Building\.\.\. (\d+)ms`).FindAllStringSubmatch(out.String(), -1) {
		ms, _ := strconv.Atoi(m[1])
		ticked = ticked || ms >= 200
	}
	if !ticked {
		t.Errorf("the live line's elapsed time did not tick: %q", out.String())
	}
}

func TestElapsed(t *testing.T) {
	for d, want := range map[time.Duration]string{
		3 * time.Millisecond:    "3ms",
		40 * time.Millisecond:   "40ms",
		999 * time.Millisecond:  "999ms",
		2100 * time.Millisecond: "2.1s",
		65 * time.Second:        "1m05s",
	} {
		if got := Elapsed(d); got != want {
			t.Errorf("Elapsed(%s) = %q, want %q", d, got, want)
		}
	}
}
