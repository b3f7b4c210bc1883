package templatebuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/template"
)

// VariantsFile is `template build --config FILE`: a base name, a source project and defaults,
// and the variants built from them. Keys are ukernel.toml's.
type VariantsFile struct {
	Name     string    `toml:"name"`
	From     string    `toml:"from"` // the project, relative to the file's directory; default: the file's directory
	Release  bool      `toml:"release"`
	VCPU     int       `toml:"vcpu"`
	MemoryMB int       `toml:"memory_mb"`
	DataMB   int       `toml:"data_mb"`
	Net      string    `toml:"net"`
	Publish  []string  `toml:"publish"`
	Variants []Variant `toml:"variants"`
}

// Variant is one [[variants]] table: a template; unset keys take the file's defaults.
type Variant struct {
	Name     string    `toml:"name"` // default NAME-ROLE
	Role     string    `toml:"role"`
	Release  *bool     `toml:"release"`
	VCPU     *int      `toml:"vcpu"`
	MemoryMB *int      `toml:"memory_mb"`
	DataMB   *int      `toml:"data_mb"`
	Net      *string   `toml:"net"`
	Publish  *[]string `toml:"publish"`
}

// ParseVariants reads a variants file and returns the templates it describes (Created and
// Updated unset), in file order. name, when not empty, is the base name (over the file's).
// Every problem names the file and line; the source must be a project defining each role.
func ParseVariants(file, name string) ([]template.Spec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var vf VariantsFile
	if err := project.DecodeStrict(file, data, &vf); err != nil {
		return nil, err
	}
	perr := func(line int, key, format string, args ...any) error {
		return &project.Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if name == "" {
		name = vf.Name
	}
	if name == "" {
		return nil, perr(0, "name", "missing: set name = \"my-app\" (the base name of the variants), or give NAME on the command line")
	}
	if err := template.ValidateName(name); err != nil {
		return nil, perr(keyLine(data, -1, "name"), "name", "%v", err)
	}
	if len(vf.Variants) == 0 {
		return nil, perr(0, "variants", "no [[variants]]: add one table per template, e.g. [[variants]] role = \"api\"")
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	src := filepath.Dir(abs)
	if vf.From != "" {
		src = vf.From
		if !filepath.IsAbs(src) {
			src = filepath.Join(filepath.Dir(abs), src)
		}
	}
	cfg, err := project.Load(src)
	if err != nil {
		return nil, perr(keyLine(data, -1, "from"), "from", "%v", err)
	}
	var specs []template.Spec
	seen := map[string]int{}
	for i, v := range vf.Variants {
		line := func(key string) int { return keyLine(data, i, key) }
		spec := template.Spec{
			Name: v.Name, Source: src, Role: v.Role, Release: vf.Release,
			VCPU: vf.VCPU, MemoryMB: vf.MemoryMB, DataMB: vf.DataMB, Net: vf.Net, Publish: vf.Publish,
		}
		if spec.Name == "" {
			if v.Role == "" {
				return nil, perr(line(""), "variants", "variant %d has neither name nor role: set name = \"...\" (or role = \"...\" for %s-ROLE)", i+1, name)
			}
			spec.Name = name + "-" + v.Role
		}
		if err := template.ValidateName(spec.Name); err != nil {
			return nil, perr(line("name"), "variants.name", "%v", err)
		}
		if prev, ok := seen[spec.Name]; ok {
			return nil, perr(line("name"), "variants.name", "variant %d is named %s, as variant %d is: give each variant its own name", i+1, spec.Name, prev)
		}
		seen[spec.Name] = i + 1
		if v.Role != "" {
			if _, err := cfg.WithRole(v.Role); err != nil {
				return nil, perr(line("role"), "variants.role", "%v", err)
			}
		}
		if v.Release != nil {
			spec.Release = *v.Release
		}
		if v.VCPU != nil {
			spec.VCPU = *v.VCPU
		}
		if v.MemoryMB != nil {
			spec.MemoryMB = *v.MemoryMB
		}
		if v.DataMB != nil {
			spec.DataMB = *v.DataMB
		}
		if v.Net != nil {
			spec.Net = *v.Net
		}
		if v.Publish != nil {
			spec.Publish = *v.Publish
		}
		if err := spec.ValidateRun(); err != nil {
			return nil, perr(line(""), "variants", "variant %s: %v", spec.Name, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// keyLine is the line of key in the variant-th [[variants]] table (-1: before the first), or of
// the table's header when key is "" or not found; 0 when unknown.
func keyLine(data []byte, variant int, key string) int {
	table, header := -1, 0
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[[variants]]") {
			table++
			if table == variant {
				header = i + 1
			}
			continue
		}
		if strings.HasPrefix(t, "[") {
			table = 1 << 30 // another table: nothing after it is ours
			continue
		}
		if k, _, ok := strings.Cut(t, "="); ok && table == variant && key != "" && strings.Trim(strings.TrimSpace(k), `"`) == key {
			return i + 1
		}
	}
	return header
}

// Apply makes the store hold specs: a template that does not exist is created, one that does
// gets the spec's settings (under its lock). It returns the names created.
func Apply(ctx context.Context, s *template.Store, specs []template.Spec, command string) ([]string, error) {
	var created []string
	for _, spec := range specs {
		spec := spec
		if _, err := s.Get(spec.Name); err != nil {
			var nf *template.NotFoundError
			if !errors.As(err, &nf) {
				return created, err
			}
			if err := s.Create(&spec); err != nil {
				return created, err
			}
			created = append(created, spec.Name)
			continue
		}
		release, err := s.Lock(ctx, spec.Name, command, nil)
		if err != nil {
			return created, err
		}
		cur, err := s.Get(spec.Name)
		if err == nil {
			spec.Created = cur.Created
			spec.Updated = cur.Updated
			if !reflect.DeepEqual(*cur, spec) {
				err = s.Save(&spec)
			}
		}
		release()
		if err != nil {
			return created, err
		}
	}
	return created, nil
}
