package abi

import (
	"fmt"
	"strconv"
)

// A snapshot is taken of a guest whose workload init has frozen (ControlFreeze, answered by
// EventFrozen), and every guest restored from it is given what must differ between clones
// before its workload runs on (ControlRestore, answered by EventReseeded): fresh entropy (the
// kernel has no vmgenid driver, so clones would otherwise share their random pool), the wall
// clock, its own hostname and machine-id, and the run's secrets (its config drive is the
// snapshot's, long deleted).
const (
	ControlFreeze  = "freeze"  // stop the workload's processes (SIGSTOP) for a snapshot
	ControlRestore = "restore" // Restore: reseed, set the clock, name, secrets; then continue the workload
	EventFrozen    = "frozen"  // the workload is stopped; the guest may be saved
	EventReseeded  = "reseeded"
)

// Bounds of a Restore message.
const (
	MinRestoreEntropy = 32   // bytes: a full reseed of the kernel's CRNG (256 bits)
	MaxRestoreEntropy = 4096 // bytes
	// MaxControlLine bounds one control line, secrets included.
	MaxControlLine = 1 << 20
)

// Restore is what a restored guest is given, once, before its workload continues.
type Restore struct {
	Entropy []byte `json:"entropy"`      // mixed into the kernel's pool (RNDADDENTROPY) before a forced reseed
	TimeNS  int64  `json:"time_unix_ns"` // the host's wall clock when the message was written
	// Hostname replaces the snapshot's when set; MachineID (32 lowercase hex digits) replaces
	// /etc/machine-id when the image has one.
	Hostname  string            `json:"hostname,omitempty"`
	MachineID string            `json:"machine_id,omitempty"`
	Secrets   map[string][]byte `json:"secrets,omitempty"` // written to SecretsDir as at a cold boot
}

// Validate checks a Restore as the guest takes it: nothing in it may be half-applied.
func (r *Restore) Validate() error {
	if n := len(r.Entropy); n < MinRestoreEntropy || n > MaxRestoreEntropy {
		return fmt.Errorf("restore: entropy is %d bytes; want %d to %d", n, MinRestoreEntropy, MaxRestoreEntropy)
	}
	if r.TimeNS <= 0 {
		return fmt.Errorf("restore: time_unix_ns %d is not a wall-clock time", r.TimeNS)
	}
	if r.Hostname != "" {
		if err := validHostname(r.Hostname); err != nil {
			return fmt.Errorf("restore: hostname: %w", err)
		}
	}
	if r.MachineID != "" {
		if err := validMachineID(r.MachineID); err != nil {
			return fmt.Errorf("restore: machine_id: %w", err)
		}
	}
	for name := range r.Secrets {
		if err := ValidSecretName(name); err != nil {
			return fmt.Errorf("restore: secret: %w", err)
		}
	}
	return nil
}

// validHostname accepts what sethostname(2) takes and a resolver can look up: 1-64 letters,
// digits and hyphens in dot-separated labels that neither start nor end with a hyphen.
func validHostname(h string) error {
	if len(h) > 64 {
		return fmt.Errorf("%d bytes; at most 64", len(h))
	}
	label := 0
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == '.' {
			if label == 0 || h[i-1] == '-' || h[i-label] == '-' {
				return fmt.Errorf("%q: empty label or a label starting or ending with '-'", h)
			}
			label = 0
			continue
		}
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%q: byte %d (%s) is not a letter, digit, '-' or '.'", h, i, strconv.QuoteRune(rune(c)))
		}
		label++
	}
	return nil
}

// validMachineID accepts machine-id(5)'s format: 32 lowercase hex digits, not all zero.
func validMachineID(id string) error {
	if len(id) != 32 {
		return fmt.Errorf("%d characters; want 32 hex digits", len(id))
	}
	zero := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("character %d is not a lowercase hex digit", i)
		}
		zero = zero && c == '0'
	}
	if zero {
		return fmt.Errorf("all zero")
	}
	return nil
}

// ValidSecretName accepts a secret's name as a file name in SecretsDir: 1-255 bytes, no '/',
// no NUL, not "." or "..".
func ValidSecretName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fmt.Errorf("name %q is not a file name", name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("name %q holds '/' or NUL", name)
		}
	}
	return nil
}

// DecodeControl decodes one control line as encoding/json.Unmarshal would into a Control (the
// guest reads it with the decoder of decode.go: a restored guest's first control message comes
// while TCG translates everything anew). Restore.Validate checks what a restore carries. Errors
// never quote the line's values: it may hold secrets.
func DecodeControl(line []byte) (*Control, error) {
	if len(line) > MaxControlLine {
		return nil, &DecodeError{Doc: "control", Msg: "line longer than " + strconv.Itoa(MaxControlLine) + " bytes"}
	}
	c := new(Control)
	d := &decoder{data: line, doc: "control"}
	if err := d.document(func() error { return d.control(c) }); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *decoder) control(c *Control) error {
	return d.object(func(k string) error {
		switch k {
		case "type":
			return d.str(&c.Type)
		case "grace_s":
			return d.int(&c.GraceS)
		case "restore":
			if d.literal("null") {
				c.Restore = nil
				return nil
			}
			if c.Restore == nil {
				c.Restore = new(Restore)
			}
			return d.restore(c.Restore)
		}
		return d.skip()
	})
}

func (d *decoder) restore(r *Restore) error {
	return d.object(func(k string) error {
		switch k {
		case "entropy":
			return d.bytes(&r.Entropy)
		case "time_unix_ns":
			return d.int64(&r.TimeNS)
		case "hostname":
			return d.str(&r.Hostname)
		case "machine_id":
			return d.str(&r.MachineID)
		case "secrets":
			return dict(d, &r.Secrets, d.bytes)
		}
		return d.skip()
	})
}
