package abi

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// refExecMessages is a second reading of the exec channel's format, written from its comment
// independently of ExecReader: it indexes the whole input instead of streaming it. The two must
// agree on every input (TestExecDifferential, FuzzExecReader).
func refExecMessages(b []byte) ([]ExecMsg, bool) {
	var out []ExecMsg
	for len(b) > 0 {
		if len(b) < 4 || b[0] != 'X' || !strings.ContainsRune("SIRKAOEFZ", rune(b[1])) {
			return out, false
		}
		n := int(b[2])<<8 | int(b[3])
		switch b[1] {
		case 'R', 'A', 'Z':
			if n != 4 {
				return out, false
			}
		case 'K':
			if n != 1 {
				return out, false
			}
		}
		if len(b) < 4+n {
			return out, false
		}
		m := ExecMsg{Type: b[1]}
		if n > 0 {
			m.Payload = append([]byte(nil), b[4:4+n]...)
		}
		out = append(out, m)
		b = b[4+n:]
	}
	return out, true
}

func readExec(r io.Reader) ([]ExecMsg, error) {
	er := NewExecReader(r)
	var out []ExecMsg
	for {
		m, err := er.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func session(t testing.TB) []byte {
	t.Helper()
	start, err := EncodeExecStart(ExecRequest{Argv: []string{"sh", "-c", "echo $((6*7))"}, Env: []string{"TERM=xterm"}, TTY: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, m := range []ExecMsg{
		{Type: ExecStart, Payload: start}, {Type: ExecStdin, Payload: []byte("exit\n")}, {Type: ExecStdin},
		ExecResizeMsg(50, 132), {Type: ExecSignal, Payload: []byte{2}},
		ExecStartedMsg(42), {Type: ExecStdout, Payload: []byte("42\r\n")}, {Type: ExecStderr, Payload: []byte{0, 'X', 0xff}},
		{Type: ExecError, Payload: []byte("no such user")}, ExecExitMsg(-1),
	} {
		if b, err = AppendExec(b, m); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// TestExecDifferential: ExecReader, fed whole or a byte at a time, reads what the reference
// reads, from a whole session and from every prefix of it (a prefix cut inside a message is an
// error for both).
func TestExecDifferential(t *testing.T) {
	b := session(t)
	for i := 0; i <= len(b); i++ {
		want, ok := refExecMessages(b[:i])
		for _, r := range []io.Reader{bytes.NewReader(b[:i]), iotest.OneByteReader(bytes.NewReader(b[:i]))} {
			got, err := readExec(r)
			if (err == nil) != ok {
				t.Fatalf("prefix of %d bytes: ExecReader error %v, reference ok %v", i, err, ok)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("prefix of %d bytes: ExecReader read %v, reference %v", i, got, want)
			}
		}
	}
	if msgs, _ := refExecMessages(b); len(msgs) != 10 || msgs[9].Int32() != -1 || msgs[5].Int32() != 42 {
		t.Fatalf("session decoded as %v", msgs)
	}
}

func TestExecStartRoundTrip(t *testing.T) {
	valid := []string{}
	for _, s := range tricky {
		if utf8.ValidString(s) {
			valid = append(valid, s)
		}
	}
	for _, r := range []ExecRequest{
		{},
		{Argv: []string{"/bin/sh"}, TTY: true, Rows: 65535, Cols: 1},
		{Argv: valid, Env: valid, Cwd: valid[0], User: valid[2]},
		{Argv: []string{""}, Env: []string{"=", "A=" + strings.Repeat("b", 60000)}},
	} {
		p, err := EncodeExecStart(r)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		got, err := DecodeExecStart(p)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
	}
}

// TestExecRefused: what does not fit the format is refused on both sides, never cut or mangled.
func TestExecRefused(t *testing.T) {
	for _, r := range []ExecRequest{
		{Argv: []string{"invalid \xff"}},
		{Env: []string{strings.Repeat("x", MaxExecPayload+1)}},
		{Env: []string{strings.Repeat("x", 40000), strings.Repeat("y", 40000)}},
		{Argv: make([]string, maxExecStrings+1)},
	} {
		if _, err := EncodeExecStart(r); err == nil {
			t.Errorf("request of %d argv, %d env strings encoded", len(r.Argv), len(r.Env))
		}
	}
	good, _ := EncodeExecStart(ExecRequest{Argv: []string{"ls"}})
	for name, p := range map[string][]byte{
		"short":         good[:3],
		"flags":         append([]byte{2}, good[1:]...),
		"trailing":      append(append([]byte(nil), good...), 0),
		"cut":           good[:len(good)-1],
		"count too big": {0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
		"invalid utf-8": {0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0},
	} {
		if _, err := DecodeExecStart(p); !errors.Is(err, ErrBadExec) {
			t.Errorf("%s: %v, want ErrBadExec", name, err)
		}
	}
	for name, m := range map[string]ExecMsg{
		"unknown type": {Type: 'Q'},
		"exit of 3":    {Type: ExecExit, Payload: []byte{0, 0, 7}},
		"signal of 0":  {Type: ExecSignal},
		"big error":    {Type: ExecError, Payload: make([]byte, MaxExecPayload+1)},
	} {
		if _, err := AppendExec(nil, m); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
	for name, b := range map[string][]byte{
		"magic":       {'O', ExecStdout, 0, 0},
		"type":        {'X', 'Q', 0, 0},
		"exit length": {'X', ExecExit, 0, 3, 0, 0, 7},
	} {
		if _, err := readExec(bytes.NewReader(b)); !errors.Is(err, ErrBadExec) {
			t.Errorf("%s: %v, want ErrBadExec", name, err)
		}
	}
	if _, err := readExec(bytes.NewReader([]byte{'X', ExecStdout, 0, 5, 'a'})); err != io.ErrUnexpectedEOF {
		t.Errorf("cut payload: %v, want io.ErrUnexpectedEOF", err)
	}
}

// TestExecSplit: output longer than one message arrives whole, in order, in several.
func TestExecSplit(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), MaxExecPayload/5+3)
	b, err := AppendExec(nil, ExecMsg{Type: ExecStdout, Payload: data})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := readExec(bytes.NewReader(b))
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d messages, %v; want 3", len(msgs), err)
	}
	var got []byte
	for _, m := range msgs {
		got = append(got, m.Payload...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("split output does not join back to the original")
	}
}

// FuzzExecReader: any input reads without panic, as the reference reads it; the messages read
// encode back to the bytes they came from; a start request that decodes encodes back to itself.
func FuzzExecReader(f *testing.F) {
	f.Add(session(f))
	f.Add([]byte{'X', ExecStdin, 0, 0})
	f.Add([]byte{'X', ExecStart, 0, 5, 1, 0, 24, 0, 80})
	f.Add([]byte("not messages"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := readExec(bytes.NewReader(data))
		want, ok := refExecMessages(data)
		if (err == nil) != ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("ExecReader read %v (%v), reference %v (ok %v)", got, err, want, ok)
		}
		var again []byte
		for _, m := range got {
			if again, err = AppendExec(again, m); err != nil {
				t.Fatalf("message %+v read does not encode: %v", m, err)
			}
			if m.Type != ExecStart {
				continue
			}
			r, err := DecodeExecStart(m.Payload)
			if err != nil {
				continue
			}
			p, err := EncodeExecStart(r)
			if err != nil || !bytes.Equal(p, m.Payload) {
				t.Fatalf("start request %+v re-encodes to %x (%v), not %x", r, p, err, m.Payload)
			}
		}
		if !bytes.HasPrefix(data, again) {
			t.Fatalf("messages re-encode to %x, not a prefix of %x", again, data)
		}
	})
}

func TestRootWorkload(t *testing.T) {
	users := []User{{Name: "app", UID: 1000}, {Name: "toor", UID: 0}}
	for _, c := range []struct {
		m    Manifest
		root bool
	}{
		{Manifest{Entry: []string{"x"}}, true},
		{Manifest{Entry: []string{"x"}, User: "app", Users: users}, false},
		{Manifest{Entry: []string{"x"}, User: "toor", Users: users}, true},
		{Manifest{Entry: []string{"x"}, User: "ghost", Users: users}, true},
		{Manifest{User: "root", Users: users, Services: []Service{{Name: "db", User: "app"}}}, false}, // no entry
		{Manifest{Entry: []string{"x"}, User: "app", Users: users, Services: []Service{{Name: "db"}}}, true},
	} {
		if got := c.m.RootWorkload(); got != c.root {
			t.Errorf("%+v: RootWorkload %v, want %v", c.m, got, c.root)
		}
	}
}
