// Package template is the template store: named, versioned images on this host. A template
// is a name, a source project with a role and a build setting (what makes the image), and run
// settings (how it boots, applied at run time as `run`'s flags are). Each build of it is a
// revision, identified by the SHA-256 of its image file (the digest `inspect` verifies), so the
// same inputs give the same revision id on any machine; an input key (Inputs.Key) finds a
// revision already built without building again.
//
// Layout, under $UKERNEL_TEMPLATES or $XDG_DATA_HOME/ukernel/templates:
//
//	NAME/template.json             the Spec
//	NAME/current                   the current revision's id (a file replaced atomically)
//	NAME/lock                      the template's lock (an flock naming its holder)
//	NAME/revisions/ID/image.img    the image, read-only; shared with other templates by hard link
//	NAME/revisions/ID/revision.json
//	NAME/revisions/ID/snapshot/    reserved for snapshots of this revision
//	NAME/logs/, NAME/.ukernel/     its runs' logs and data volume (it is their project directory)
//	_keys/KEY                      input key -> revision id, for every template
//
// Every file is published by an atomic rename: a write killed at any step leaves the previous
// state whole. Names with '_' are not template names, so the store's own entries never clash.
package template

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// Spec is a template. JSON field names are ukernel.toml's keys. Zero run settings mean "as the
// image says" (its [run] and [data] defaults), as an absent `run` flag does.
type Spec struct {
	Name string `json:"name"`
	// Source is the project directory, absolute; empty for a template pulled from a registry,
	// which can be run but not built.
	Source  string `json:"source,omitempty"`
	Role    string `json:"role,omitempty"` // "" is the project's implicit role (no [roles])
	Release bool   `json:"release,omitempty"`

	VCPU     int      `json:"vcpu,omitempty"`
	MemoryMB int      `json:"memory_mb,omitempty"`
	DataMB   int      `json:"data_mb,omitempty"`
	Net      string   `json:"net,omitempty"`
	Publish  []string `json:"publish,omitempty"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// BuildSettings returns what of the spec changes the image: two specs with the same build
// settings share their revisions.
func (s Spec) BuildSettings() string {
	return fmt.Sprintf("source=%s role=%s release=%v", s.Source, s.Role, s.Release)
}

// Inputs are what a revision's image is made from.
type Inputs struct {
	Lock    string `json:"lock"`   // env/ukernel.lock's digest
	Source  string `json:"source"` // SourceDigest of the project
	Role    string `json:"role,omitempty"`
	Release bool   `json:"release,omitempty"`
	Ukernel string `json:"ukernel"` // the building ukernel: version and binary digest
	// What else the image depends on, when set: SOURCE_DATE_EPOCH, and for a Go workload the
	// Go toolchain that builds it.
	Epoch string `json:"source_date_epoch,omitempty"`
	Go    string `json:"go,omitempty"`
}

// Key is the input key: equal inputs make an equal image, so a revision recorded under this
// key is taken without building.
func (in Inputs) Key() string {
	h := sha256.New()
	fmt.Fprintf(h, "ukernel-template-inputs 1\nlock %s\nsource %s\nrole %s\nrelease %v\nukernel %s\nepoch %s\ngo %s\n", in.Lock, in.Source, in.Role, in.Release, in.Ukernel, in.Epoch, in.Go)
	return hex.EncodeToString(h.Sum(nil))
}

// Revision is one build of a template, as revision.json records it.
type Revision struct {
	ID       string    `json:"id"`        // SHA-256 of image.img, hex
	InputKey string    `json:"input_key"` // "" for an image added without its inputs (pulled)
	Inputs   *Inputs   `json:"inputs,omitempty"`
	Role     string    `json:"role,omitempty"` // from the image's manifest
	BuiltAt  time.Time `json:"built_at"`
	// Added is when the revision joined this template (built, or taken from another template
	// with the same input key): revisions are listed, kept and rolled back in this order.
	Added   time.Time `json:"added"`
	Ukernel string    `json:"ukernel"` // version of the ukernel that built the image
	Sizes   Sizes     `json:"sizes"`
}

// Short is the revision id as listings show it.
func (r Revision) Short() string { return ShortID(r.ID) }

// ShortID is the first 12 hex digits of a revision id.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Sizes of a revision's image, in bytes.
type Sizes struct {
	Kernel    int64 `json:"kernel"`
	Initramfs int64 `json:"initramfs"`
	Root      int64 `json:"root"`
	Total     int64 `json:"total"` // the image file
	// Closure is the download size of the locked packages the image was built from, and
	// Packages their number (from the manifest).
	Closure  int64 `json:"closure"`
	Packages int   `json:"packages"`
}

// ValidateName checks a template name: host-name rules, as a project name (it names the guest
// and, for variants, NAME-ROLE).
func ValidateName(name string) error {
	if err := project.ValidateName(name); err != nil {
		return fmt.Errorf("invalid template name %q: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// RefPrefix marks a template revision where a command takes an image (inspect, diff).
const RefPrefix = "template:"

// Ref names a revision as commands take it: template:NAME@SHORTID.
func Ref(name, id string) string { return RefPrefix + name + "@" + ShortID(id) }

var revRe = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// ParseRef splits NAME[@REV]; REV is a revision id or a unique prefix of one (at least 4 hex
// digits), empty for the current revision.
func ParseRef(ref string) (name, rev string, err error) {
	name, rev, hasRev := strings.Cut(ref, "@")
	if err := ValidateName(name); err != nil {
		return "", "", err
	}
	if hasRev && !revRe.MatchString(rev) {
		return "", "", fmt.Errorf("%q: the revision after @ is a revision id or its first 4 or more hex digits (see ukernel template revisions %s)", ref, name)
	}
	return name, rev, nil
}

// ValidateRun checks the spec's run settings with ukernel.toml's ranges (0 and "" keep the
// image's default); key names the setting as ukernel.toml does.
func (s Spec) ValidateRun() error {
	var errs []error
	if s.VCPU != 0 && (s.VCPU < 1 || s.VCPU > 32) {
		errs = append(errs, fmt.Errorf("vcpu %d is out of range; expected 1-32", s.VCPU))
	}
	if s.MemoryMB != 0 && (s.MemoryMB < 64 || s.MemoryMB > 65536) {
		errs = append(errs, fmt.Errorf("memory_mb %d is out of range; expected 64-65536 (MiB)", s.MemoryMB))
	}
	if s.DataMB < 0 || s.DataMB > project.MaxDataMB {
		errs = append(errs, fmt.Errorf("data_mb %d is out of range; expected 0 (the image's) to %d", s.DataMB, project.MaxDataMB))
	}
	if s.Net != "" {
		if _, err := abi.ParseNet(s.Net); err != nil {
			errs = append(errs, fmt.Errorf("net: %w", err))
		}
	}
	for _, p := range s.Publish {
		if _, _, err := project.ParsePublish(p); err != nil {
			errs = append(errs, fmt.Errorf("publish %w", err))
		}
	}
	return errors.Join(errs...)
}
