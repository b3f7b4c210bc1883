package abi

// This file decodes the two documents on the guest's boot critical path, the image manifest and
// the boot config, without encoding/json. Under QEMU's software emulation (TCG) every code path
// is translated the first time it runs: the first json.Unmarshal of a manifest costs 15-21 ms of
// a cold start (a second identical one 0.6 ms), almost all of it the first run of encoding/json's
// reflection machinery. This small recursive-descent decoder costs a few ms instead.
//
// The json tags in abi.go stay the single source of truth: decode_test.go fills every field of
// every type reachable from Manifest and BootConfig by reflection, marshals the value with
// encoding/json and requires this decoder to return exactly what encoding/json returns, so a
// field added to abi.go without a case here fails the tests.
//
// Semantics follow encoding/json's Unmarshal into the same types: unknown keys are skipped (after
// checking their values are valid JSON), null leaves a field unchanged but sets a slice, map or
// pointer to nil, an empty array gives an empty non-nil slice, a repeated key decodes again into
// what is already there (maps and structs merge, slices are reused element by element), invalid
// UTF-8 in a string becomes U+FFFD, []byte is standard base64 (or an array of numbers 0-255),
// integers must be integers in range.
// Keys are matched exactly: encoding/json's case-insensitive fallback is not needed because
// encoding/json.Marshal writes the tags as they are, so a key in another case is skipped as
// unknown.

import (
	"encoding/base64"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// DecodeError reports why DecodeManifest or DecodeBootConfig failed, and where. Its message
// never quotes the input's values (the boot config carries secrets), only the field path, whose
// map keys (environment and secret names) come from the input.
type DecodeError struct {
	Doc    string // "manifest" or "boot config"
	Path   string // the field, e.g. "services[0].env.PATH"; "" for the document itself
	Offset int    // byte offset in the input where the problem starts
	Msg    string // what is wrong: "want a string" for a valid value of the wrong type or range
	Syntax bool   // the input is not valid JSON at Offset (rather than JSON that does not fit)
}

func (e *DecodeError) Error() string {
	s := e.Doc + ": "
	if e.Path != "" {
		s += e.Path + ": "
	}
	return s + e.Msg + " at offset " + strconv.Itoa(e.Offset)
}

// DecodeManifest decodes a manifest as encoding/json.Unmarshal would (see the file comment). The
// guest's init uses it instead of encoding/json, whose first run costs ~20 ms of a cold start
// under TCG on the boot's critical path; this decoder costs a few ms.
func DecodeManifest(data []byte) (*Manifest, error) {
	m := new(Manifest)
	d := &decoder{data: data, doc: "manifest"}
	if err := d.document(func() error { return d.manifest(m) }); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeBootConfig decodes a boot config as encoding/json.Unmarshal would (see the file comment).
func DecodeBootConfig(data []byte) (*BootConfig, error) {
	c := new(BootConfig)
	d := &decoder{data: data, doc: "boot config"}
	if err := d.document(func() error { return d.bootConfig(c) }); err != nil {
		return nil, err
	}
	return c, nil
}

// maxDepth bounds the nesting of arrays and objects like encoding/json's scanner does, so that
// a hostile document cannot overflow the stack of the recursive skip.
const maxDepth = 10000

type decoder struct {
	data  []byte
	pos   int
	depth int
	doc   string
}

func (d *decoder) document(value func() error) error {
	d.ws()
	if err := value(); err != nil {
		return err
	}
	d.ws()
	if d.pos < len(d.data) {
		return d.syntax("data after the document")
	}
	return nil
}

// Per-type decoders: each sets the fields of its struct by json tag and skips unknown keys.

func (d *decoder) manifest(m *Manifest) error {
	return d.object(func(k string) error {
		switch k {
		case "abi":
			return d.str(&m.ABI)
		case "name":
			return d.str(&m.Name)
		case "role":
			return d.str(&m.Role)
		case "adapter":
			return d.adapter(&m.Adapter)
		case "entry":
			return list(d, &m.Entry, d.str)
		case "workdir":
			return d.str(&m.Workdir)
		case "env":
			return dict(d, &m.Env, d.str)
		case "user":
			return d.str(&m.User)
		case "secrets":
			return list(d, &m.Secrets, d.str)
		case "services":
			return list(d, &m.Services, d.service)
		case "health":
			return list(d, &m.Health, d.healthCheck)
		case "run":
			return d.runDefaults(&m.Run)
		case "data":
			return d.object(func(k string) error {
				if k == "disk_mb" {
					return d.int(&m.Data.DiskMB)
				}
				return d.skip()
			})
		case "kernel":
			return d.kernel(&m.Kernel)
		case "modules":
			return list(d, &m.Modules, d.str)
		case "module_groups":
			return dict(d, &m.ModuleGroups, d.strs)
		case "root":
			return d.root(&m.Root)
		case "users":
			return list(d, &m.Users, d.user)
		case "exec":
			return d.bool(&m.Exec)
		case "lock":
			return d.lock(&m.Lock)
		case "artefacts":
			return list(d, &m.Artefacts, d.artefact)
		case "build":
			return d.build(&m.Build)
		}
		return d.skip()
	})
}

func (d *decoder) adapter(a *Adapter) error {
	return d.object(func(k string) error {
		switch k {
		case "name":
			return d.str(&a.Name)
		case "runtime":
			return d.str(&a.Runtime)
		}
		return d.skip()
	})
}

func (d *decoder) service(s *Service) error {
	return d.object(func(k string) error {
		switch k {
		case "name":
			return d.str(&s.Name)
		case "command":
			return list(d, &s.Command, d.str)
		case "env":
			return dict(d, &s.Env, d.str)
		case "workdir":
			return d.str(&s.Workdir)
		case "user":
			return d.str(&s.User)
		case "restart":
			return d.str(&s.Restart)
		case "secrets":
			return list(d, &s.Secrets, d.str)
		}
		return d.skip()
	})
}

func (d *decoder) healthCheck(h *HealthCheck) error {
	return d.object(func(k string) error {
		switch k {
		case "service":
			return d.str(&h.Service)
		case "http":
			return d.str(&h.HTTP)
		case "cmd":
			return list(d, &h.Cmd, d.str)
		case "interval_s":
			return d.int(&h.IntervalS)
		case "timeout_s":
			return d.int(&h.TimeoutS)
		case "retries":
			return d.int(&h.Retries)
		case "start_period_s":
			return d.int(&h.StartPeriod)
		}
		return d.skip()
	})
}

func (d *decoder) runDefaults(r *RunDefaults) error {
	return d.object(func(k string) error {
		switch k {
		case "vcpu":
			return d.int(&r.VCPU)
		case "memory_mb":
			return d.int(&r.MemoryMB)
		case "net":
			return d.str(&r.Net)
		case "publish":
			return list(d, &r.Publish, d.str)
		}
		return d.skip()
	})
}

func (d *decoder) kernel(k *Kernel) error {
	return d.object(func(key string) error {
		switch key {
		case "package":
			return d.str(&k.Package)
		case "version":
			return d.str(&k.Version)
		case "release":
			return d.str(&k.Release)
		case "cmdline":
			return d.str(&k.Cmdline)
		}
		return d.skip()
	})
}

func (d *decoder) root(r *Root) error {
	return d.object(func(k string) error {
		switch k {
		case "fstype":
			return d.str(&r.FSType)
		case "size":
			return d.int64(&r.Size)
		case "sha256":
			return d.str(&r.SHA256)
		case "verity":
			if d.literal("null") {
				r.Verity = nil
				return nil
			}
			if r.Verity == nil {
				r.Verity = new(Verity)
			}
			return d.verity(r.Verity)
		}
		return d.skip()
	})
}

func (d *decoder) verity(v *Verity) error {
	return d.object(func(k string) error {
		switch k {
		case "root_hash":
			return d.str(&v.RootHash)
		case "salt":
			return d.str(&v.Salt)
		case "data_blocks":
			return d.int64(&v.DataBlocks)
		case "hash_offset":
			return d.int64(&v.HashOffset)
		case "block_size":
			return d.int(&v.BlockSize)
		case "hash_algorithm":
			return d.str(&v.HashAlgorithm)
		}
		return d.skip()
	})
}

func (d *decoder) user(u *User) error {
	return d.object(func(k string) error {
		switch k {
		case "name":
			return d.str(&u.Name)
		case "uid":
			return d.int(&u.UID)
		case "gid":
			return d.int(&u.GID)
		case "home":
			return d.str(&u.Home)
		case "shell":
			return d.str(&u.Shell)
		}
		return d.skip()
	})
}

func (d *decoder) lock(l *LockRef) error {
	return d.object(func(k string) error {
		switch k {
		case "digest":
			return d.str(&l.Digest)
		case "packages":
			return d.int(&l.Packages)
		case "closure":
			return list(d, &l.Closure, d.str)
		}
		return d.skip()
	})
}

func (d *decoder) artefact(a *Artefact) error {
	return d.object(func(k string) error {
		switch k {
		case "name":
			return d.str(&a.Name)
		case "path":
			return d.str(&a.Path)
		case "size":
			return d.int64(&a.Size)
		case "sha256":
			return d.str(&a.SHA256)
		}
		return d.skip()
	})
}

func (d *decoder) build(b *BuildInfo) error {
	return d.object(func(k string) error {
		switch k {
		case "ukernel":
			return d.str(&b.Ukernel)
		case "go":
			return d.str(&b.Go)
		case "source_date_epoch":
			return d.int64(&b.SourceDateEpoch)
		}
		return d.skip()
	})
}

func (d *decoder) bootConfig(c *BootConfig) error {
	return d.object(func(k string) error {
		switch k {
		case "abi":
			return d.str(&c.ABI)
		case "run_id":
			return d.str(&c.RunID)
		case "hostname":
			return d.str(&c.Hostname)
		case "env":
			return dict(d, &c.Env, d.str)
		case "secrets":
			return dict(d, &c.Secrets, d.bytes)
		case "network":
			return d.network(&c.Network)
		case "host_time_unix_ns":
			return d.int64(&c.HostTime)
		case "debug":
			return d.bool(&c.Debug)
		case "perf":
			return d.bool(&c.Perf)
		case "stop_grace_s":
			return d.int(&c.StopGraceS)
		case "data_mb":
			return d.int(&c.DataMB)
		}
		return d.skip()
	})
}

func (d *decoder) network(n *Network) error {
	return d.object(func(k string) error {
		switch k {
		case "mode":
			return d.str(&n.Mode)
		case "address":
			return d.str(&n.Address)
		case "gateway":
			return d.str(&n.Gateway)
		case "dns":
			return list(d, &n.DNS, d.str)
		}
		return d.skip()
	})
}

// Value decoders. Each starts at the first byte of a value (whitespace skipped) and leaves the
// position after it. null leaves the target unchanged, or sets a slice or map to nil.

func (d *decoder) str(p *string) error {
	start := d.pos
	if d.literal("null") {
		return nil
	}
	if d.peek() != '"' {
		return d.mismatch(start, "a string")
	}
	s, err := d.string()
	if err == nil {
		*p = s
	}
	return err
}

func (d *decoder) strs(p *[]string) error { return list(d, p, d.str) }

func (d *decoder) bool(p *bool) error {
	switch start := d.pos; {
	case d.literal("true"):
		*p = true
	case d.literal("false"):
		*p = false
	case !d.literal("null"):
		return d.mismatch(start, "true or false")
	}
	return nil
}

func (d *decoder) int(p *int) error {
	start := d.pos
	n, ok, err := d.integer()
	if ok && int64(int(n)) != n {
		return d.fail(start, "want an integer in the int range")
	}
	if ok {
		*p = int(n)
	}
	return err
}

func (d *decoder) int64(p *int64) error {
	n, ok, err := d.integer()
	if ok {
		*p = n
	}
	return err
}

func (d *decoder) byte(p *byte) error {
	start := d.pos
	n, ok, err := d.integer()
	if ok && (n < 0 || n > 255 || d.data[start] == '-') {
		return d.fail(start, "want an integer from 0 to 255")
	}
	if ok {
		*p = byte(n)
	}
	return err
}

// integer decodes an integer; ok is false for null or an error.
func (d *decoder) integer() (n int64, ok bool, err error) {
	start := d.pos
	if d.literal("null") {
		return 0, false, nil
	}
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		return 0, false, d.mismatch(start, "an integer")
	}
	isInt, err := d.number()
	if err != nil {
		return 0, false, err
	}
	if !isInt {
		return 0, false, d.fail(start, "want an integer, not a fraction or exponent")
	}
	n, err = strconv.ParseInt(string(d.data[start:d.pos]), 10, 64)
	if err != nil {
		return 0, false, d.fail(start, "want an integer in the int64 range")
	}
	return n, true, nil
}

// bytes decodes a []byte, which encoding/json writes as a standard base64 string (and also
// reads from an array of numbers).
func (d *decoder) bytes(p *[]byte) error {
	start := d.pos
	if d.literal("null") {
		*p = nil
		return nil
	}
	if d.peek() == '[' {
		return list(d, p, d.byte)
	}
	if d.peek() != '"' {
		return d.mismatch(start, "a base64 string")
	}
	s, err := d.string()
	if err != nil {
		return err
	}
	b := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(b, []byte(s))
	if err != nil {
		return d.fail(start, "want a base64 string")
	}
	*p = b[:n]
	return nil
}

// list decodes a JSON array into *p, reusing its elements as encoding/json does.
func list[T any](d *decoder, p *[]T, elem func(*T) error) error {
	if d.literal("null") {
		*p = nil
		return nil
	}
	s, n := *p, 0
	err := d.array(func(i int) error {
		if i >= len(s) {
			if i < cap(s) {
				s = s[:i+1]
			} else {
				var zero T
				s = append(s, zero)
			}
		}
		n = i + 1
		return elem(&s[i])
	})
	if err != nil {
		return err
	}
	if n == 0 {
		s = []T{}
	}
	*p = s[:n]
	return nil
}

// dict decodes a JSON object into the map *p, each value into a fresh V.
func dict[V any](d *decoder, p *map[string]V, elem func(*V) error) error {
	if d.literal("null") {
		*p = nil
		return nil
	}
	if d.peek() == '{' && *p == nil {
		*p = map[string]V{}
	}
	return d.object(func(k string) error {
		var v V
		if err := elem(&v); err != nil {
			return err
		}
		(*p)[k] = v
		return nil
	})
}

// The JSON layer.

// object calls field for each key of a JSON object, with the position at the key's value, which
// field must consume. null is no object and no error.
func (d *decoder) object(field func(key string) error) error {
	start := d.pos
	if d.literal("null") {
		return nil
	}
	if d.peek() != '{' {
		return d.mismatch(start, "an object")
	}
	if err := d.enter(); err != nil {
		return err
	}
	d.ws()
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil
	}
	for {
		d.ws()
		if d.peek() != '"' {
			return d.syntax("expected a key string")
		}
		key, err := d.string()
		if err != nil {
			return err
		}
		d.ws()
		if d.peek() != ':' {
			return within(d.syntax("expected ':' after the key"), key)
		}
		d.pos++
		d.ws()
		if err := field(key); err != nil {
			return within(err, key)
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.pos++
			continue
		case '}':
			d.pos++
			d.depth--
			return nil
		}
		return d.syntax("expected ',' or '}' after an object member")
	}
}

// array calls elem for each element of a JSON array, with the position at the element.
func (d *decoder) array(elem func(i int) error) error {
	if d.peek() != '[' {
		return d.mismatch(d.pos, "an array")
	}
	if err := d.enter(); err != nil {
		return err
	}
	d.ws()
	if d.peek() == ']' {
		d.pos++
		d.depth--
		return nil
	}
	for i := 0; ; i++ {
		d.ws()
		if err := elem(i); err != nil {
			return within(err, "["+strconv.Itoa(i)+"]")
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.pos++
			continue
		case ']':
			d.pos++
			d.depth--
			return nil
		}
		return d.syntax("expected ',' or ']' after an array element")
	}
}

// enter consumes the '{' or '[' at the position, one level deeper.
func (d *decoder) enter() error {
	if d.depth++; d.depth > maxDepth {
		return d.syntax("nesting deeper than " + strconv.Itoa(maxDepth))
	}
	d.pos++
	return nil
}

// skip consumes any JSON value, checking its syntax.
func (d *decoder) skip() error {
	switch c := d.peek(); {
	case c == '{':
		return d.object(func(string) error { return d.skip() })
	case c == '[':
		return d.array(func(int) error { return d.skip() })
	case c == '"':
		_, err := d.string()
		return err
	case c == '-' || '0' <= c && c <= '9':
		_, err := d.number()
		return err
	case d.literal("true"), d.literal("false"), d.literal("null"):
		return nil
	}
	return d.syntax("invalid character, want a value")
}

// string decodes the JSON string at the position (which holds '"') like encoding/json: escapes
// resolved, a lone or broken surrogate and each byte of invalid UTF-8 turned into U+FFFD.
func (d *decoder) string() (string, error) {
	d.pos++
	start := d.pos
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			d.pos++
			return string(d.data[start : d.pos-1]), nil
		}
		if c == '\\' || c < ' ' || c >= utf8.RuneSelf {
			break
		}
		d.pos++
	}
	buf := append([]byte(nil), d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		switch c := d.data[d.pos]; {
		case c == '"':
			d.pos++
			return string(buf), nil
		case c < ' ':
			return "", d.syntax("control character in a string")
		case c < utf8.RuneSelf && c != '\\':
			buf = append(buf, c)
			d.pos++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(d.data[d.pos:])
			buf = utf8.AppendRune(buf, r)
			d.pos += n
		default:
			var r rune
			if d.pos++; d.pos < len(d.data) {
				r = rune(d.data[d.pos])
			}
			switch r {
			case '"', '\\', '/':
			case 'b':
				r = '\b'
			case 'f':
				r = '\f'
			case 'n':
				r = '\n'
			case 'r':
				r = '\r'
			case 't':
				r = '\t'
			case 'u':
				if r = d.hex4(d.pos + 1); r < 0 {
					return "", d.syntax(`invalid \u escape`)
				}
				d.pos += 4
				if utf16.IsSurrogate(r) {
					if r2 := d.hex4(d.pos + 3); d.peekAt(d.pos+1) == '\\' && d.peekAt(d.pos+2) == 'u' && r2 >= 0 {
						r = utf16.DecodeRune(r, r2)
						if r != utf8.RuneError {
							d.pos += 6
						}
					} else {
						r = utf8.RuneError
					}
				}
			default:
				return "", d.syntax("invalid escape in a string")
			}
			buf = utf8.AppendRune(buf, r)
			d.pos++
		}
	}
	return "", d.syntax("unterminated string")
}

// hex4 returns the value of the four hex digits at i, or -1.
func (d *decoder) hex4(i int) rune {
	if i+4 > len(d.data) {
		return -1
	}
	var r rune
	for _, c := range d.data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// number consumes a JSON number and reports whether it is an integer (no fraction, no exponent).
func (d *decoder) number() (isInt bool, err error) {
	if d.peek() == '-' {
		d.pos++
	}
	if d.peek() == '0' {
		d.pos++
	} else if !d.digits() {
		return false, d.syntax("invalid number")
	}
	isInt = true
	if d.peek() == '.' {
		d.pos++
		if isInt = false; !d.digits() {
			return false, d.syntax("invalid number: no digits after '.'")
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.pos++
		if c := d.peek(); c == '+' || c == '-' {
			d.pos++
		}
		if isInt = false; !d.digits() {
			return false, d.syntax("invalid number: no digits in the exponent")
		}
	}
	return isInt, nil
}

func (d *decoder) digits() bool {
	start := d.pos
	for c := d.peek(); '0' <= c && c <= '9'; c = d.peek() {
		d.pos++
	}
	return d.pos > start
}

func (d *decoder) ws() {
	for ; d.pos < len(d.data); d.pos++ {
		if c := d.data[d.pos]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return
		}
	}
}

// peek returns the byte at the position, 0 at the end of the input.
func (d *decoder) peek() byte { return d.peekAt(d.pos) }

func (d *decoder) peekAt(i int) byte {
	if i < len(d.data) {
		return d.data[i]
	}
	return 0
}

// literal consumes s if the input continues with it.
func (d *decoder) literal(s string) bool {
	if len(d.data)-d.pos >= len(s) && string(d.data[d.pos:d.pos+len(s)]) == s {
		d.pos += len(s)
		return true
	}
	return false
}

// mismatch reports a value at start that is not of the wanted type, or its syntax error, as
// encoding/json reports a syntax error before a type error.
func (d *decoder) mismatch(start int, want string) error {
	d.pos = start
	if err := d.skip(); err != nil {
		return err
	}
	return d.fail(start, "want "+want)
}

// fail reports valid JSON at offset that does not fit its field.
func (d *decoder) fail(offset int, msg string) error {
	return &DecodeError{Doc: d.doc, Offset: offset, Msg: msg}
}

// syntax reports invalid JSON at the position.
func (d *decoder) syntax(msg string) error {
	if d.pos >= len(d.data) {
		msg = "unexpected end of input"
	}
	return &DecodeError{Doc: d.doc, Offset: d.pos, Msg: msg, Syntax: true}
}

// within prefixes the path of a DecodeError with the key or index seg it happened under.
func within(err error, seg string) error {
	if e, ok := err.(*DecodeError); ok {
		switch {
		case e.Path == "":
			e.Path = seg
		case e.Path[0] == '[':
			e.Path = seg + e.Path
		default:
			e.Path = seg + "." + e.Path
		}
	}
	return err
}
