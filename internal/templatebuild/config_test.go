package templatebuild

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/template"
)

const shopToml = `[project]
name = "shop"
language = "shell"
entry = "src/main.sh"
[env]
base = "debian-12"
[roles.api]
entry = "src/api.sh"
[roles.worker]
entry = "src/worker.sh"
`

const variants = `name = "shop"
memory_mb = 256

[[variants]]
role = "api"

[[variants]]
role = "worker"
release = true

[[variants]]
name = "shop-worker-big"
role = "worker"
memory_mb = 1024
`

func writeVariants(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ukernel.toml"), []byte(shopToml), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "variants.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseVariants(t *testing.T) {
	p := writeVariants(t, variants)
	specs, err := ParseVariants(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 || specs[0].Name != "shop-api" || specs[0].Source != filepath.Dir(p) || specs[0].MemoryMB != 256 ||
		specs[1].Name != "shop-worker" || !specs[1].Release || specs[2].Name != "shop-worker-big" || specs[2].MemoryMB != 1024 || specs[2].Release {
		t.Fatalf("specs: %+v", specs)
	}
	// NAME on the command line is the base name.
	if specs, err = ParseVariants(p, "store"); err != nil || specs[0].Name != "store-api" || specs[2].Name != "shop-worker-big" {
		t.Fatalf("base name: %+v %v", specs, err)
	}
}

func TestParseVariantsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
		line                int
	}{
		{"duplicate", variants + "\n[[variants]]\nrole = \"api\"\n", "variant 4 is named shop-api, as variant 1 is", 16},
		{"unknown role", strings.Replace(variants, `role = "api"`, `role = "web"`, 1), `role "web" is not defined in ukernel.toml; its roles: api, worker`, 5},
		{"unknown key", strings.Replace(variants, "memory_mb = 1024", "memory = 1024", 1), "variants.memory: unknown key", 14},
		{"no name", strings.Replace(variants, `name = "shop"`, "", 1), "missing: set name", 0},
		{"no variants", "name = \"shop\"\n", "no [[variants]]", 0},
		{"range", strings.Replace(variants, "memory_mb = 1024", "memory_mb = 1", 1), "memory_mb 1 is out of range", 11},
		{"anonymous", variants + "\n[[variants]]\nvcpu = 2\n", "variant 4 has neither name nor role", 16},
		{"bad name", strings.Replace(variants, `name = "shop-worker-big"`, `name = "Big"`, 1), "invalid template name", 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVariants(writeVariants(t, tc.content), "")
			var pe *project.Error
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &pe) || pe.Line != tc.line || !strings.HasSuffix(pe.File, "variants.toml") {
				t.Fatalf("error %v (line %d), want %q at line %d", err, pe.Line, tc.want, tc.line)
			}
		})
	}
}

// docs/CONFIG.md's variants file example parses against a project with its roles.
func TestVariantsDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	var example string
	for _, part := range strings.Split(string(doc), "```toml\n")[1:] {
		if b := part[:strings.Index(part, "```")]; strings.Contains(b, "[[variants]]") {
			example = b
		}
	}
	if example == "" {
		t.Fatal("docs/CONFIG.md has no variants file example")
	}
	specs, err := ParseVariants(writeVariants(t, example), "")
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	if len(specs) != 2 || specs[0].Name != "shop-api" || specs[1].MemoryMB != 1024 || specs[1].DataMB != 64 || specs[0].MemoryMB != 256 {
		t.Fatalf("the example decoded unexpectedly: %+v", specs)
	}
}

// FuzzParseVariants: any file gives specs or an error positioned in the file, never a panic;
// specs have valid, unique names and run settings in range.
func FuzzParseVariants(f *testing.F) {
	f.Add(variants)
	f.Add("name = \"a\"\n[[variants]]\nname = \"a-b\"\nvcpu = 2\n")
	f.Add("[[variants]]\n[[variants]]\nrole = 3\n")
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ukernel.toml"), []byte(shopToml), 0o644); err != nil {
		f.Fatal(err)
	}
	p := filepath.Join(dir, "variants.toml")
	f.Fuzz(func(t *testing.T, content string) {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		specs, err := ParseVariants(p, "")
		if err != nil {
			var pe *project.Error
			if !errors.As(err, &pe) || pe.File != p {
				t.Fatalf("error not positioned in the file: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, s := range specs {
			if template.ValidateName(s.Name) != nil || seen[s.Name] || s.ValidateRun() != nil {
				t.Fatalf("bad spec accepted: %+v", s)
			}
			seen[s.Name] = true
		}
	})
}
