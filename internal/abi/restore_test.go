package abi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func fullRestore() Restore {
	return Restore{
		Entropy: bytes.Repeat([]byte{7}, 64), TimeNS: 1_764_000_000_000_000_000,
		Hostname: "pg-1", MachineID: "0123456789abcdef0123456789abcdef",
		Secrets: map[string][]byte{"db_password": []byte("s3cret"), "empty": {}},
	}
}

func sameControl(t *testing.T, data []byte) *Control {
	t.Helper()
	var want Control
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("encoding/json: %v\n%s", err, data)
	}
	got, err := DecodeControl(data)
	if err != nil {
		t.Fatalf("DecodeControl: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("DecodeControl differs from encoding/json\ngot  %#v\nwant %#v\ninput %s", *got, want, data)
	}
	return got
}

func TestDecodeControl(t *testing.T) {
	r := fullRestore()
	got := sameControl(t, marshal(t, Control{Type: ControlRestore, Restore: &r}))
	if err := got.Restore.Validate(); err != nil {
		t.Errorf("a full restore does not validate: %v", err)
	}
	sameControl(t, marshal(t, Control{Type: ControlStop, GraceS: 9}))
	sameControl(t, marshal(t, Control{Type: ControlFreeze}))
	sameControl(t, []byte(`{"type":"restore","restore":null,"x":[1,{"y":null}]}`))
	// Every field of Control and Restore, by reflection: a field added without a case in
	// restore.go's decoder fails here.
	var c Control
	(&filler{t: t}).fill(reflect.ValueOf(&c).Elem(), "control")
	if c.Restore == nil || c.Restore.TimeNS == 0 {
		t.Fatalf("filler left the restore empty: %#v", c)
	}
	sameControl(t, marshal(t, c))
}

func TestDecodeControlErrorsHideValues(t *testing.T) {
	for _, in := range []string{
		`{"type":"restore","restore":{"secrets":{"k":"not base64 TOPSECRET"}}}`,
		`{"type":"restore","restore":{"entropy":"TOPSECRET"`,
		`{"type":"restore","restore":{"time_unix_ns":"TOPSECRET"}}`,
	} {
		_, err := DecodeControl([]byte(in))
		if err == nil {
			t.Errorf("%s: decoded", in)
			continue
		}
		if strings.Contains(err.Error(), "TOPSECRET") {
			t.Errorf("%s: the error quotes a value: %v", in, err)
		}
	}
	if _, err := DecodeControl(bytes.Repeat([]byte{' '}, MaxControlLine+1)); err == nil {
		t.Error("a line over MaxControlLine decoded")
	}
}

func TestRestoreValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Restore)
		want string // "" valid
	}{
		{"full", func(*Restore) {}, ""},
		{"minimal", func(r *Restore) { r.Hostname, r.MachineID, r.Secrets = "", "", nil }, ""},
		{"short entropy", func(r *Restore) { r.Entropy = r.Entropy[:MinRestoreEntropy-1] }, "entropy is 31 bytes"},
		{"no entropy", func(r *Restore) { r.Entropy = nil }, "entropy is 0 bytes"},
		{"long entropy", func(r *Restore) { r.Entropy = make([]byte, MaxRestoreEntropy+1) }, "entropy is 4097 bytes"},
		{"no time", func(r *Restore) { r.TimeNS = 0 }, "not a wall-clock time"},
		{"hostname with a space", func(r *Restore) { r.Hostname = "a b" }, "is not a letter"},
		{"hostname label starting with -", func(r *Restore) { r.Hostname = "a.-b" }, "starting or ending"},
		{"hostname ending with .", func(r *Restore) { r.Hostname = "a." }, "empty label"},
		{"hostname too long", func(r *Restore) { r.Hostname = strings.Repeat("a", 65) }, "at most 64"},
		{"machine-id uppercase", func(r *Restore) { r.MachineID = strings.Repeat("A", 32) }, "lowercase hex"},
		{"machine-id short", func(r *Restore) { r.MachineID = "abc" }, "want 32"},
		{"machine-id zero", func(r *Restore) { r.MachineID = strings.Repeat("0", 32) }, "all zero"},
		{"secret path", func(r *Restore) { r.Secrets = map[string][]byte{"../x": nil} }, "holds '/'"},
		{"secret dot-dot", func(r *Restore) { r.Secrets = map[string][]byte{"..": nil} }, "not a file name"},
	} {
		r := fullRestore()
		tc.edit(&r)
		err := r.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

var controlKeys = tagNames(reflect.TypeFor[Control](), map[string]bool{})

func FuzzDecodeControl(f *testing.F) {
	r := fullRestore()
	f.Add(marshal(f, Control{Type: ControlRestore, Restore: &r}))
	f.Add(marshal(f, Control{Type: ControlStop, GraceS: 3}))
	f.Add([]byte(`{"restore":{"entropy":[1,2],"secrets":{"a":null}},"restore":{"hostname":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, controlKeys, DecodeControl)
		if c, err := DecodeControl(data); err == nil && c.Restore != nil {
			_ = c.Restore.Validate() // must not panic on anything that decodes
		}
	})
}
