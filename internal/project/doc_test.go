package project

import (
	"os"
	"strings"
	"testing"
)

// TestConfigDocExamples keeps docs/CONFIG.md honest: its examples parse and validate.
func TestConfigDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, part := range strings.Split(string(doc), "```toml\n")[1:] {
		blocks = append(blocks, part[:strings.Index(part, "```")])
	}
	// The first two are ukernel.toml and ukernel.env; the template variants file and the user
	// configuration follow, checked by their own packages' tests.
	if len(blocks) < 2 {
		t.Fatalf("docs/CONFIG.md has %d toml examples, want ukernel.toml and ukernel.env first", len(blocks))
	}
	c, err := Parse("docs/CONFIG.md ukernel.toml", []byte(blocks[0]))
	if err != nil {
		t.Fatalf("the ukernel.toml example does not validate: %v", err)
	}
	if c.Services["db"].Restart != "on-failure" || c.Health["db"].Retries != 3 || len(c.Project.Secrets) != 1 {
		t.Errorf("the example decoded unexpectedly: %+v", c)
	}
	if _, err := ParseEnv("docs/CONFIG.md ukernel.env", []byte(blocks[1]), c.Env.Base); err != nil {
		t.Fatalf("the ukernel.env example does not validate: %v", err)
	}
}
