package guestlog

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// TerminalWriter passes guest output to a terminal with its control sequences neutralised: a
// guest must not move the cursor, retitle the window, redefine keys or hide what it printed
// on the host's terminal. Newline and tab pass; every other C0 control (ESC and CR included),
// DEL, the C1 controls (U+0080-U+009F, which terminals read as ESC sequences) and bytes that
// are not UTF-8 are shown escaped, as \x1b or \u009b. Docker and kubectl pass a container's
// bytes raw; ukernel does so on pipes and files only, where nothing interprets them.
type TerminalWriter struct {
	W       io.Writer
	pending []byte // the start of a UTF-8 sequence cut by the end of a write
}

func (t *TerminalWriter) Write(p []byte) (int, error) {
	data := p
	if len(t.pending) > 0 {
		data = append(t.pending, p...)
		t.pending = nil
	}
	out := make([]byte, 0, len(data)+16)
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != 0x7f || c == '\n' || c == '\t' {
				out = append(out, c)
			} else {
				out = fmt.Appendf(out, `\x%02x`, c)
			}
			i++
			continue
		}
		if !utf8.FullRune(data[i:]) {
			t.pending = append([]byte(nil), data[i:]...)
			break
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = fmt.Appendf(out, `\x%02x`, c)
		case r >= 0x80 && r <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, data[i:i+size]...)
		}
		i += size
	}
	if _, err := t.W.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a cut UTF-8 sequence left at the end, escaped.
func (t *TerminalWriter) Flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	var out []byte
	for _, c := range t.pending {
		out = fmt.Appendf(out, `\x%02x`, c)
	}
	t.pending = nil
	_, err := t.W.Write(out)
	return err
}

// ForTerminal returns w, neutralised (a TerminalWriter) when it is a terminal.
func ForTerminal(w io.Writer, terminal bool) io.Writer {
	if !terminal || w == nil {
		return w
	}
	return &TerminalWriter{W: w}
}

// Neutralise returns text from an untrusted source (a guest, a remote host) for an error
// message on a terminal, its control sequences escaped as TerminalWriter does.
func Neutralise(text string) string {
	var b strings.Builder
	t := &TerminalWriter{W: &b}
	t.Write([]byte(text))
	t.Flush()
	return b.String()
}
