package build

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
)

func TestModulesFor(t *testing.T) {
	cfg := &project.Config{}
	if strings.Contains(strings.Join(ModulesFor(cfg), ","), "ext4") {
		t.Error("ext4 without a data volume")
	}
	cfg.Data.DiskMB = 64
	if mods := ModulesFor(cfg); mods[len(mods)-1] != "ext4" || len(mods) != len(GuestModules)+1 {
		t.Errorf("modules with a data volume: %v", mods)
	}
}
