package abi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseNet(t *testing.T) {
	for in, want := range map[string]Net{
		"user":                {Mode: NetUser},
		"none":                {Mode: NetNone},
		"tap:tap0":            {Mode: NetTap, Iface: "tap0"},
		"tap:br.v-1_xy":       {Mode: NetTap, Iface: "br.v-1_xy"},
		"tap:0123456789ABCDE": {Mode: NetTap, Iface: "0123456789ABCDE"},
		"tap:Z":               {Mode: NetTap, Iface: "Z"},
	} {
		got, err := ParseNet(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseNet(%q) = %+v (%q), %v; want %+v", in, got, got.String(), err, want)
		}
	}
	for _, in := range []string{"", "tap", "tap:", "bridge", "USER", "tap:a/b", "tap:0123456789abcdef", "none:x",
		"tap:tap0\n", "tap:tap 0", "tap:tap\x00", "tap:t\u00e4p", "tap:tap0:1", "user\n"} {
		if n, err := ParseNet(in); err == nil || !strings.Contains(err.Error(), "expected user, none or tap:IFACE") {
			t.Errorf("ParseNet(%q) = %+v, %v; want refused", in, n, err)
		}
	}
	// In JSON (the detached monitor's request) a setting is its text; "" is not set.
	var v struct{ A, B Net }
	if err := json.Unmarshal([]byte(`{"A":"tap:tap0","B":""}`), &v); err != nil || v.A != (Net{Mode: NetTap, Iface: "tap0"}) || v.B != (Net{}) {
		t.Errorf("unmarshal: %+v, %v", v, err)
	}
	if b, _ := json.Marshal(v); string(b) != `{"A":"tap:tap0","B":""}` {
		t.Errorf("marshal: %s", b)
	}
	if err := json.Unmarshal([]byte(`{"A":"bridge"}`), &v); err == nil {
		t.Error("a bad setting decoded")
	}
}

// FuzzParseNet: what is accepted prints back as it was written, and parses again the same.
func FuzzParseNet(f *testing.F) {
	for _, s := range []string{"user", "none", "tap:tap0", "tap:", "tap:a:b", "user "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNet(s)
		if err != nil {
			return
		}
		if n.String() != s {
			t.Fatalf("ParseNet(%q).String() = %q", s, n.String())
		}
		if again, err := ParseNet(n.String()); err != nil || again != n {
			t.Fatalf("reparse %q: %+v, %v", s, again, err)
		}
	})
}
