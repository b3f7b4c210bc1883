package qemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveQMP answers one client on a unix socket: the greeting, then reply for every line read
// after qmp_capabilities.
func serveQMP(t *testing.T, reply func(cmd string) []byte) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "q.qmp")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct{ Execute string }
			json.Unmarshal(line, &req)
			if req.Execute == "qmp_capabilities" {
				c.Write([]byte(`{"return": {}}` + "\n"))
				continue
			}
			if _, err := c.Write(reply(req.Execute)); err != nil {
				return
			}
		}
	}()
	return sock
}

// TestQMPReplySizeLimit: a reply line above 1 MiB is an error (it was read into memory whole,
// 608 MB allocated for a 200 MB line), while a large reply under the bound still decodes.
func TestQMPReplySizeLimit(t *testing.T) {
	big := func(n int, newline bool) func(string) []byte {
		return func(string) []byte {
			b := []byte(`{"return": "` + strings.Repeat("a", n) + `"}`)
			if newline {
				b = append(b, '\n')
			}
			return b
		}
	}
	for _, c := range []struct {
		name    string
		reply   func(string) []byte
		wantErr string
	}{
		{"under the bound", big(maxQMPMessage-64, true), ""},
		{"over the bound", big(4*maxQMPMessage, true), "longer than 1048576 bytes"},
		{"no newline", big(4*maxQMPMessage, false), "longer than 1048576 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			q, err := DialQMP(ctx, serveQMP(t, c.reply))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var s string
			err = q.Execute(ctx, "query-block", nil, &s)
			if c.wantErr == "" {
				if err != nil || len(s) != maxQMPMessage-64 {
					t.Fatalf("reply of %d bytes: %v", len(s), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("got %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}

// scriptConn is the write side of a QMP connection whose replies come from a fuzz input.
type scriptConn struct{ net.Conn }

func (scriptConn) Write(b []byte) (int, error) { return len(b), nil }
func (scriptConn) SetDeadline(time.Time) error { return nil }

// FuzzQMPReplies feeds any byte stream to Execute as QEMU's replies. Execute succeeds exactly
// when the stream holds complete lines that are JSON objects, events skipped, up to one with a
// "return" (and no "error"), and it returns that value unchanged.
func FuzzQMPReplies(f *testing.F) {
	f.Add([]byte(`{"return": {}}` + "\n"))
	f.Add([]byte(`{"event": "STOP", "data": {}}` + "\n" + `{"return": [{"device": "root", "inserted": {"ro": true}}]}` + "\n"))
	f.Add([]byte(`{"error": {"class": "GenericError", "desc": "no"}}` + "\n"))
	f.Add([]byte(`{"return": 1`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q := &QMP{conn: scriptConn{}, r: bufio.NewReader(bytes.NewReader(data)), path: "fuzz"}
		var got json.RawMessage
		err := q.Execute(context.Background(), "query-block", nil, &got)
		want, ok := referenceReply(data)
		if (err == nil) != ok {
			t.Fatalf("Execute: %v; the reference accepts: %v", err, ok)
		}
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("Execute returned %q, the reference %q", got, want)
		}
	})
}

// referenceReply is the protocol read the simple way: split into lines, decode each.
func referenceReply(data []byte) (json.RawMessage, bool) {
	for {
		line, rest, found := bytes.Cut(data, []byte("\n"))
		if !found || len(line)+1 > maxQMPMessage {
			return nil, false
		}
		data = rest
		var rep qmpReply
		if json.Unmarshal(line, &rep) != nil {
			return nil, false
		}
		switch {
		case rep.Event != "":
		case rep.Error != nil:
			return nil, false
		case rep.Return != nil:
			var v json.RawMessage
			if json.Unmarshal(*rep.Return, &v) != nil {
				return nil, false
			}
			return v, true
		}
	}
}
