package abi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func readAll(t testing.TB, b []byte) ([]Frame, error) {
	t.Helper()
	fr := NewFrameReader(bytes.NewReader(b))
	var out []Frame
	for {
		f, err := fr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	in := []Frame{
		{Kind: FrameHello, Data: []byte(Version)},
		{Kind: FrameStdout, Data: []byte("hello\n")},
		{Kind: FrameStderr, Service: "db", Data: []byte("LOG:  ready\n")},
		{Kind: FrameStdout, Service: strings.Repeat("s", MaxFrameName), Data: []byte{0, 0xff, 'O', 1, 2}},
		{Kind: FrameStdout, Service: "web"},
	}
	var buf []byte
	for _, f := range in {
		var err error
		if buf, err = AppendFrames(buf, f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readAll(t, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d frames decoded, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i].Kind != in[i].Kind || got[i].Service != in[i].Service || !bytes.Equal(got[i].Data, in[i].Data) {
			t.Errorf("frame %d: got %+v, want %+v", i, got[i], in[i])
		}
	}
}

// TestFrameSplit: data longer than one frame holds arrives whole, in order, in several frames.
func TestFrameSplit(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), MaxFrameData/5+3)
	buf, err := AppendFrames(nil, Frame{Kind: FrameStderr, Service: "x", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d frames, want 3", len(got))
	}
	var joined []byte
	for _, f := range got {
		if f.Kind != FrameStderr || f.Service != "x" {
			t.Fatalf("frame %+v lost its kind or service", f)
		}
		joined = append(joined, f.Data...)
	}
	if !bytes.Equal(joined, data) {
		t.Fatal("split data does not join back")
	}
}

func TestFrameErrors(t *testing.T) {
	if _, err := AppendFrames(nil, Frame{Kind: 9}); err == nil {
		t.Error("unknown kind encoded")
	}
	if _, err := AppendFrames(nil, Frame{Kind: FrameStdout, Service: strings.Repeat("n", MaxFrameName+1)}); err == nil {
		t.Error("over-long name encoded")
	}
	good, _ := AppendFrames(nil, Frame{Kind: FrameStdout, Service: "a", Data: []byte("line\n")})
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"console text", []byte("[    0.3] PCI: Fatal\n"), ErrBadFrame},
		{"unknown kind", []byte{FrameMagic, 7, 0, 0, 0}, ErrBadFrame},
		{"cut header", good[:3], io.ErrUnexpectedEOF},
		{"cut body", good[:len(good)-1], io.ErrUnexpectedEOF},
	} {
		if _, err := readAll(t, c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// FuzzFrameReader: any input decodes without panic, and the frames decoded encode back to the
// bytes they were read from.
func FuzzFrameReader(f *testing.F) {
	seed, _ := AppendFrames(nil, Frame{Kind: FrameHello, Data: []byte(Version)})
	seed, _ = AppendFrames(seed, Frame{Kind: FrameStderr, Service: "db", Data: []byte("x\n")})
	f.Add(seed)
	f.Add([]byte{FrameMagic, FrameStdout, 0, 0xff, 0xff})
	f.Add([]byte("not frames"))
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, _ := readAll(t, data)
		var again []byte
		for _, fr := range frames {
			var err error
			if again, err = AppendFrames(again, fr); err != nil {
				t.Fatalf("decoded frame %+v does not encode: %v", fr, err)
			}
		}
		if !bytes.HasPrefix(data, again) {
			t.Fatalf("frames re-encode to %x, not a prefix of the input %x", again, data)
		}
	})
}
