package guestlog

import (
	"bytes"
	"testing"
)

// TestTerminalWriter: a guest's control sequences reach a terminal escaped, in pieces as
// whole; text, newlines, tabs and UTF-8 pass.
func TestTerminalWriter(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain text\tand a tab\n", "plain text\tand a tab\n"},
		{"héllo ✓ 日本\n", "héllo ✓ 日本\n"},
		{"\x1b[31mred\x1b[0m\n", `\x1b[31mred\x1b[0m` + "\n"},
		{"\x1b]0;pwned title\x07", `\x1b]0;pwned title\x07`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"over\rwrite\x08\x7f", `over\x0dwrite\x08\x7f`},
		{"\u009b31m C1 CSI", `\u009b31m C1 CSI`},
		{"\x9b31m raw 8-bit CSI \xff", `\x9b31m raw 8-bit CSI \xff`},
		{"\x00\x01\x1f", `\x00\x01\x1f`},
	}
	for _, c := range cases {
		for _, split := range []int{-1, 1, 2} {
			var out bytes.Buffer
			w := &TerminalWriter{W: &out}
			in := []byte(c.in)
			if split < 0 {
				w.Write(in)
			} else {
				for i := 0; i < len(in); i += split {
					w.Write(in[i:min(len(in), i+split)])
				}
			}
			w.Flush()
			if out.String() != c.want {
				t.Errorf("%q in pieces of %d: %q, want %q", c.in, split, out.String(), c.want)
			}
		}
	}
	// A cut sequence left at the end is shown escaped, not lost.
	var out bytes.Buffer
	w := &TerminalWriter{W: &out}
	w.Write([]byte("end \xe2\x9c"))
	w.Flush()
	if out.String() != `end \xe2\x9c` {
		t.Errorf("a cut sequence at the end: %q", out.String())
	}
	if ForTerminal(&out, false) != &out {
		t.Error("a pipe or file does not get the bytes as they are")
	}
}

func TestNeutralise(t *testing.T) {
	if got := Neutralise("line\n\x1b[31mred\u009b"); got != "line\n\\x1b[31mred\\u009b" {
		t.Errorf("Neutralise = %q", got)
	}
}
