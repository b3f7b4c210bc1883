package abi

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Strings that make encoding/json.Marshal write every kind of escape: quotes, backslashes,
// control characters, HTML characters and U+2028 (written as \u....), non-ASCII and emoji
// (written raw), invalid UTF-8 (written as \ufffd).
var tricky = []string{
	`quote " backslash \ slash / `,
	"control \x00\x01\x1f\x7f\t\n\r\b\f ",
	"non-ASCII é ß 日本語 ",
	"emoji 😀🧪 ",
	"html <&> \u2028\u2029 ",
	"invalid \xff\xed\xa0\x80 utf-8 ",
	"",
}

func fullManifest() Manifest {
	return Manifest{
		ABI:     Version,
		Name:    `app "quoted" \ back`,
		Adapter: Adapter{Name: "python", Runtime: "python-3.11 é"},
		Entry:   []string{"/usr/bin/python3", "-c", "print(\"hi\\n\")\t😀"},
		Workdir: "/app",
		Env:     map[string]string{"PATH": "/usr/bin", "Ü": "\x01\x1f", "EMPTY": ""},
		User:    "app",
		Secrets: []string{"db", "api"},
		Services: []Service{
			{Name: "db", Command: []string{"postgres", "-D", "/data"}, Env: map[string]string{"A": "b"},
				Workdir: "/data", User: "postgres", Restart: "always", Secrets: []string{"db"}},
			{Name: "cache", Command: []string{}},
		},
		Health: []HealthCheck{{Service: "db", HTTP: "http://127.0.0.1:80/", Cmd: []string{"true"},
			IntervalS: 5, TimeoutS: -1, Retries: 3, StartPeriod: math.MaxInt32}},
		Run:          RunDefaults{VCPU: 2, MemoryMB: 512, Net: "user", Publish: []string{"8080:80"}},
		Data:         Data{DiskMB: 1024},
		Kernel:       Kernel{Package: "linux-image", Version: "6.1-1", Release: "6.1.0-amd64", Cmdline: "console=ttyS0 quiet"},
		Modules:      []string{"kernel/a.ko", "kernel/b.ko"},
		ModuleGroups: map[string][]string{ModulesNet: {"kernel/b.ko"}, ModulesVsock: {}, "x": nil},
		Root: Root{FSType: "erofs", Size: math.MaxInt64, SHA256: "abc",
			Verity: &Verity{RootHash: "h", Salt: "s", DataBlocks: math.MinInt64, HashOffset: 1 << 40,
				BlockSize: 4096, HashAlgorithm: "sha256"}},
		Users:     []User{{Name: "app", UID: 1000, GID: -2, Home: "/home/app", Shell: "/bin/sh"}},
		Exec:      true,
		Lock:      LockRef{Digest: "sha256:00", Packages: 42, Closure: []string{"a=1", "pypi:b=2"}},
		Artefacts: []Artefact{{Name: "kernel", Path: "k", Size: 123, SHA256: "def"}, {Name: "root", Size: -5}},
		Build:     BuildInfo{Ukernel: "dev", Go: "go1.26", SourceDateEpoch: -1},
	}
}

func fullBootConfig() BootConfig {
	return BootConfig{
		ABI:        Version,
		RunID:      "run-1",
		Hostname:   "host\u2028😀",
		Env:        map[string]string{"TOKEN": "hunter2", `K"\`: "\x00"},
		Secrets:    map[string][]byte{"db": []byte("p\x00ss\xff"), "empty": {}, "nil": nil},
		Network:    Network{Mode: "tap", Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3", "1.1.1.1"}},
		HostTime:   math.MinInt64 + 1,
		Debug:      true,
		Perf:       true,
		StopGraceS: 30,
	}
}

// sameManifest decodes data with encoding/json and DecodeManifest and requires the same result.
func sameManifest(t *testing.T, data []byte) *Manifest {
	t.Helper()
	var want Manifest
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("encoding/json: %v\n%s", err, data)
	}
	got, err := DecodeManifest(data)
	if err != nil {
		t.Fatalf("DecodeManifest: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("DecodeManifest differs from encoding/json\ngot  %#v\nwant %#v\ninput %s", *got, want, data)
	}
	return got
}

func sameBootConfig(t *testing.T, data []byte) *BootConfig {
	t.Helper()
	var want BootConfig
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("encoding/json: %v\n%s", err, data)
	}
	got, err := DecodeBootConfig(data)
	if err != nil {
		t.Fatalf("DecodeBootConfig: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("DecodeBootConfig differs from encoding/json\ngot  %#v\nwant %#v\ninput %s", *got, want, data)
	}
	return got
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeFull(t *testing.T) {
	m := fullManifest()
	sameManifest(t, marshal(t, m))
	c := fullBootConfig()
	got := sameBootConfig(t, marshal(t, c))
	if got.Secrets["empty"] == nil || got.Secrets["nil"] != nil {
		t.Errorf("secrets: empty must be non-nil, nil must stay nil: %#v", got.Secrets)
	}
	// Indented output too (whitespace everywhere).
	b, err := json.MarshalIndent(m, "", "\t ")
	if err != nil {
		t.Fatal(err)
	}
	sameManifest(t, append(append([]byte("\r\n "), b...), " \n"...))
}

// filler sets every field of a value to something non-zero, by reflection, so that a field
// added to abi.go is covered by TestDecodeComplete without anyone remembering to add it.
type filler struct {
	t *testing.T
	n int
}

func (f *filler) fill(v reflect.Value, path string) {
	f.n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(tricky[f.n%len(tricky)] + strconv.Itoa(f.n))
	case reflect.Int, reflect.Int64:
		switch f.n % 3 {
		case 0:
			v.SetInt(math.MaxInt64 - int64(f.n))
		case 1:
			v.SetInt(math.MinInt64 + int64(f.n))
		default:
			v.SetInt(-int64(f.n))
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), path)
		v.Set(p)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte{0, 0xff, '"', byte(f.n)})
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			f.fill(s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			f.t.Fatalf("%s: map key %s: teach decode.go and this test", path, v.Type().Key())
		}
		m := reflect.MakeMap(v.Type())
		for i := range 2 {
			e := reflect.New(v.Type().Elem()).Elem()
			f.fill(e, path+".value")
			m.SetMapIndex(reflect.ValueOf(tricky[(f.n+i)%len(tricky)]+strconv.Itoa(i)), e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
			if name == "" || name == "-" || !sf.IsExported() || sf.Anonymous {
				f.t.Fatalf("%s.%s: no plain json tag; decode.go decodes by json tag only", path, sf.Name)
			}
			f.fill(v.Field(i), path+"."+name)
		}
	default:
		f.t.Fatalf("%s: kind %s is not supported: teach decode.go and this test", path, v.Kind())
	}
}

func TestDecodeComplete(t *testing.T) {
	var m Manifest
	(&filler{t: t}).fill(reflect.ValueOf(&m).Elem(), "manifest")
	got := sameManifest(t, marshal(t, m))
	// The comparison is with encoding/json's decoding (Marshal turns invalid UTF-8 into U+FFFD,
	// so not with m itself); make sure the filler did fill.
	if reflect.DeepEqual(*got, Manifest{}) || got.Root.Verity == nil {
		t.Fatalf("filler left the manifest empty: %#v", got)
	}
	var c BootConfig
	(&filler{t: t}).fill(reflect.ValueOf(&c).Elem(), "bootconfig")
	sameBootConfig(t, marshal(t, c))
}

func TestDecodeZero(t *testing.T) {
	got := sameManifest(t, marshal(t, Manifest{}))
	if !reflect.DeepEqual(*got, Manifest{}) {
		t.Errorf("zero manifest round trip: %#v", got)
	}
	if got := sameBootConfig(t, marshal(t, BootConfig{})); !reflect.DeepEqual(*got, BootConfig{}) {
		t.Errorf("zero boot config round trip: %#v", got)
	}
	// Empty but non-nil slices and maps survive as such where no omitempty drops them.
	got = sameManifest(t, marshal(t, Manifest{Artefacts: []Artefact{}, Services: []Service{{Command: []string{}}}}))
	if got.Artefacts == nil || got.Services[0].Command == nil {
		t.Errorf("empty slices became nil: %#v", got)
	}
	sameBootConfig(t, marshal(t, BootConfig{Secrets: map[string][]byte{"a": {}}}))
	for _, in := range []string{`null`, ` {} `, `{"entry":[],"env":{},"module_groups":{"a":[]}}`} {
		sameManifest(t, []byte(in))
	}
}

func TestDecodeUnknownAndNull(t *testing.T) {
	for _, in := range []string{
		`{"abi":"0.3.0","future":{"x":[1,-2.5e-3,0E+1,{"y":null}],"z":"\u00e9\ud83d\ude00","t":true,"f":false},"name":"n"}`,
		`{"abi":null,"name":null,"adapter":null,"entry":null,"env":null,"services":null,"run":null,"root":{"verity":null,"size":null},"users":[null,{"uid":null,"name":"u"}],"artefacts":null}`,
		`{"services":[{"name":"a","env":{"A":null},"command":[null,"x"],"future":[[[]]]}],"module_groups":{"net":null}}`,
		`{"root":{"verity":{"block_size":4096,"salt":null,"new":{}}},"lock":{"closure":null,"extra":"x"}}`,
		`{"ABI":"0.3.0","Name":"case-mismatched keys are unknown here"}`,
	} {
		if strings.Contains(in, `"ABI"`) {
			// encoding/json would match case-insensitively; this decoder needs not.
			if m, err := DecodeManifest([]byte(in)); err != nil || m.ABI != "" {
				t.Errorf("case-mismatched key: %v %#v", err, m)
			}
			continue
		}
		sameManifest(t, []byte(in))
	}
	for _, in := range []string{
		`{"abi":"0.3.0","secrets":{"a":null,"b":"","c":"AAEC/w=="},"network":null,"debug":null,"x":[{}]}`,
		`{"env":{"A":null},"network":{"dns":null,"mode":"user","v6":{"a":1}},"perf":false,"stop_grace_s":null}`,
		`{"secrets":{"a":[],"b":[0,255,null,104],"c":"A\nA==\r\n"}}`,
	} {
		sameBootConfig(t, []byte(in))
	}
}

func TestDecodeEscapes(t *testing.T) {
	for _, s := range []string{
		`\"\\\/\b\f\n\r\t`,
		`\u0041\u00e9\u20ac\u0000\u001f\uFFFF\uFFFd`,
		`\ud83d\ude00 \uD83D\uDE00`, // surrogate pairs
		`\ud800 lone \udc00 low \ud800\u0041 broken \ud83d\ud83d\ude00 double \udbff\udfff`,
		`\ud800\n \ud800\\u0041 \ud800`,
		"raw \xff \xed\xa0\x80 \xe2\x82 \xc0\xaf \xf4\x90\x80\x80 \xef\xbf\xbd 😀",
		"tail \xe2",
	} {
		in := []byte(`{"name":"` + s + `","env":{"` + s + `":"` + s + `"}}`)
		sameManifest(t, in)
	}
}

func TestDecodeRepeatedKeys(t *testing.T) {
	// encoding/json decodes a repeated key into what is already there; so does DecodeManifest.
	for _, in := range []string{
		`{"name":"a","name":"b"}`,
		`{"env":{"a":"1","a":"2"},"env":{"b":"3"}}`,
		`{"users":[{"name":"a","uid":1},{"name":"b"}],"users":[{"gid":2}],"users":[null,null]}`,
		`{"entry":["a","b","c"],"entry":["x"],"entry":[null,null,null,null]}`,
		`{"entry":["a","b"],"entry":[],"entry":[null]}`,
		`{"root":{"verity":{"salt":"s"}},"root":{"verity":{"root_hash":"h"},"size":1}}`,
		`{"root":{"verity":{"salt":"s"}},"root":{"verity":null}}`,
		`{"module_groups":{"net":["a"]},"module_groups":{"net":[null]}}`,
	} {
		sameManifest(t, []byte(in))
	}
}

func TestDecodeNumbers(t *testing.T) {
	for _, in := range []string{
		`{"root":{"size":-0},"data":{"disk_mb":0}}`,
		`{"root":{"size":9223372036854775807},"build":{"source_date_epoch":-9223372036854775808}}`,
		`{"run":{"vcpu":-1,"memory_mb":1234567890123}}`,
	} {
		sameManifest(t, []byte(in))
	}
}

func TestDecodeDepth(t *testing.T) {
	ok := `{"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`
	sameManifest(t, []byte(ok))
	deep := `{"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`
	if _, err := DecodeManifest([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Errorf("nesting deeper than %d: got %v", maxDepth, err)
	}
	if err := json.Unmarshal([]byte(deep), new(Manifest)); err == nil {
		t.Errorf("encoding/json accepts nesting deeper than %d; adjust maxDepth", maxDepth)
	}
	// Deep enough to overflow the stack of an unbounded recursive decoder.
	huge := strings.Repeat("[", 10<<20)
	if _, err := DecodeManifest([]byte(`{"x":` + huge)); err == nil {
		t.Error("accepted a truncated deep document")
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the whole message
	}{
		{``, `manifest: unexpected end of input at offset 0`},
		{`  `, `manifest: unexpected end of input at offset 2`},
		{`{"abi":"0.3.0"`, `manifest: unexpected end of input at offset 14`},
		{`{"abi":"0.3.0",`, `manifest: unexpected end of input at offset 15`},
		{`{"abi":"0.3`, `manifest: abi: unexpected end of input at offset 11`},
		{`{"abi"`, `manifest: abi: unexpected end of input at offset 6`},
		{`{"services":[{"name":"a"},{"command":["x"`, `manifest: services[1].command: unexpected end of input at offset 41`},
		{`[]`, `manifest: want an object at offset 0`},
		{`"x"`, `manifest: want an object at offset 0`},
		{`{"abi":1}`, `manifest: abi: want a string at offset 7`},
		{`{"abi":{"a":1}}`, `manifest: abi: want a string at offset 7`},
		{`{"abi":{"a":1x}}`, `manifest: abi: expected ',' or '}' after an object member at offset 13`},
		{`{"entry":"sh"}`, `manifest: entry: want an array at offset 9`},
		{`{"entry":["sh",1]}`, `manifest: entry[1]: want a string at offset 15`},
		{`{"services":[{"name":"a"},{"command":"x"}]}`, `manifest: services[1].command: want an array at offset 37`},
		{`{"health":[{"interval_s":"5"}]}`, `manifest: health[0].interval_s: want an integer at offset 25`},
		{`{"run":{"vcpu":1.5}}`, `manifest: run.vcpu: want an integer, not a fraction or exponent at offset 15`},
		{`{"run":{"vcpu":1e3}}`, `manifest: run.vcpu: want an integer, not a fraction or exponent at offset 15`},
		{`{"root":{"size":9223372036854775808}}`, `manifest: root.size: want an integer in the int64 range at offset 16`},
		{`{"root":{"verity":[]}}`, `manifest: root.verity: want an object at offset 18`},
		{`{"env":{"A":true}}`, `manifest: env.A: want a string at offset 12`},
		{`{"module_groups":{"net":"a"}}`, `manifest: module_groups.net: want an array at offset 24`},
		{`{"run":{"vcpu":01}}`, `manifest: run: expected ',' or '}' after an object member at offset 16`},
		{`{"run":{"vcpu":-}}`, `manifest: run.vcpu: invalid number at offset 16`},
		{`{"run":{"vcpu":1.}}`, `manifest: run.vcpu: invalid number: no digits after '.' at offset 17`},
		{`{"run":{"vcpu":1e+}}`, `manifest: run.vcpu: invalid number: no digits in the exponent at offset 18`},
		{`{"name":"\x"}`, `manifest: name: invalid escape in a string at offset 10`},
		{`{"name":"\u12G4"}`, `manifest: name: invalid \u escape at offset 10`},
		{`{"name":"\ud800\u12"}`, `manifest: name: invalid \u escape at offset 16`},
		{"{\"name\":\"a\nb\"}", `manifest: name: control character in a string at offset 10`},
		{`{"name":"a"} x`, `manifest: data after the document at offset 13`},
		{`{"name":"a"}}`, `manifest: data after the document at offset 12`},
		{`{"name":"a"}{}`, `manifest: data after the document at offset 12`},
		{`{"name":"a",}`, `manifest: expected a key string at offset 12`},
		{`{"name" "a"}`, `manifest: name: expected ':' after the key at offset 8`},
		{`{"name":tru}`, `manifest: name: invalid character, want a value at offset 8`},
		{`{"x":[1,]}`, `manifest: x[1]: invalid character, want a value at offset 8`},
		{`{"x":[1 2]}`, `manifest: x: expected ',' or ']' after an array element at offset 8`},
		{`{"abi":1,"name":}`, `manifest: abi: want a string at offset 7`},
		{`{"abi":[1,}`, `manifest: abi[1]: invalid character, want a value at offset 10`},
		{"\xef\xbb\xbf{}", `manifest: invalid character, want a value at offset 0`},
	} {
		_, err := DecodeManifest([]byte(tc.in))
		checkErr(t, tc.in, err, tc.want)
		if json.Unmarshal([]byte(tc.in), new(Manifest)) == nil {
			t.Errorf("%q: encoding/json accepts what DecodeManifest rejects", tc.in)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{`{"secrets":{"k":"hunter2!"}}`, `boot config: secrets.k: want a base64 string at offset 16`},
		{`{"secrets":{"k":[104,256]}}`, `boot config: secrets.k[1]: want an integer from 0 to 255 at offset 21`},
		{`{"secrets":{"k":[-0]}}`, `boot config: secrets.k[0]: want an integer from 0 to 255 at offset 17`},
		{`{"secrets":{"k":{}}}`, `boot config: secrets.k: want a base64 string at offset 16`},
		{`{"secrets":["hunter2"]}`, `boot config: secrets: want an object at offset 11`},
		{`{"debug":"yes"}`, `boot config: debug: want true or false at offset 9`},
		{`{"env":{"TOKEN":"hunter2}}`, `boot config: env.TOKEN: unexpected end of input at offset 26`},
		{`{"network":{"dns":[1]}}`, `boot config: network.dns[0]: want a string at offset 19`},
		{`{"abi":"0.3.0","env":[1]}`, `boot config: env: want an object at offset 21`},
	} {
		_, err := DecodeBootConfig([]byte(tc.in))
		checkErr(t, tc.in, err, tc.want)
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: error quotes a value: %v", tc.in, err)
		}
	}
}

func checkErr(t *testing.T, in string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("%q: no error, want %s", in, want)
		return
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Errorf("%q: %T is no *DecodeError", in, err)
	}
	if err.Error() != want {
		t.Errorf("%q:\ngot  %s\nwant %s", in, err, want)
	}
}

func TestDecodeErrorSyntaxFlag(t *testing.T) {
	var de *DecodeError
	_, err := DecodeBootConfig([]byte(`{"env":[1]}`))
	if !errors.As(err, &de) || de.Syntax || de.Path != "env" {
		t.Errorf("type error: %#v", err)
	}
	_, err = DecodeBootConfig([]byte(`{"env":{"A":"b"`))
	if !errors.As(err, &de) || !de.Syntax || de.Offset != 15 {
		t.Errorf("syntax error: %#v", err)
	}
}

// tagNames returns every json key name of the struct types reachable from t.
func tagNames(t reflect.Type, names map[string]bool) map[string]bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		return tagNames(t.Elem(), names)
	case reflect.Struct:
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			names[name] = true
			tagNames(t.Field(i).Type, names)
		}
	}
	return names
}

var (
	manifestKeys   = tagNames(reflect.TypeFor[Manifest](), map[string]bool{})
	bootConfigKeys = tagNames(reflect.TypeFor[BootConfig](), map[string]bool{})
)

// foldedKey reports whether data holds a string (a key, or a value: the test needs not tell)
// that encoding/json would match to one of keys only case-insensitively. The decoders here skip
// such keys as unknown, so they and encoding/json legitimately differ on them.
func foldedKey(data []byte, keys map[string]bool) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil { // io.EOF or invalid JSON, which both decoders reject
			return false
		}
		if s, ok := tok.(string); ok && !keys[s] {
			for name := range keys {
				if strings.EqualFold(s, name) {
					return true
				}
			}
		}
	}
}

// fuzzDecoder checks that decode never panics, that its errors are *DecodeError naming an
// offset, and that it accepts exactly what encoding/json accepts into a T, with the same result:
// repeated keys included (both decode again into what is there), except for inputs with keys
// that encoding/json would match case-insensitively (skipped as unknown here, by design).
func fuzzDecoder[T any](t *testing.T, data []byte, keys map[string]bool, decode func([]byte) (*T, error)) {
	got, err := decode(data)
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), " at offset ") || de.Offset < 0 || de.Offset > len(data) {
			t.Fatalf("bad error %v", err)
		}
		if got != nil {
			t.Fatal("a result with an error")
		}
	}
	var want T
	jerr := json.Unmarshal(data, &want)
	if foldedKey(data, keys) {
		return
	}
	if (err == nil) != (jerr == nil) {
		t.Fatalf("decoder: %v; encoding/json: %v", err, jerr)
	}
	if err == nil && !reflect.DeepEqual(*got, want) {
		t.Fatalf("differs from encoding/json\ngot  %#v\nwant %#v", *got, want)
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(marshal(f, fullManifest()))
	f.Add(marshal(f, Manifest{}))
	f.Add([]byte(`{"users":[{"name":"a"}],"users":[{"uid":1}],"x":[1.5e3,true,null,"\ud83d\ude00"]}`))
	f.Add([]byte(`{"name":"\ud800\u0041 \xff","root":{"verity":{"block_size":-1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecoder(t, data, manifestKeys, DecodeManifest) })
}

func FuzzDecodeBootConfig(f *testing.F) {
	f.Add(marshal(f, fullBootConfig()))
	f.Add(marshal(f, BootConfig{}))
	f.Add([]byte(`{"secrets":{"a":"aGk=","b":[104,105],"c":null},"env":{"K":"\u00e9"},"network":{"dns":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzDecoder(t, data, bootConfigKeys, DecodeBootConfig) })
}
