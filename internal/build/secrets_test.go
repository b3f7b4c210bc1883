package build

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
)

func TestCheckSecretOwners(t *testing.T) {
	m := abi.Manifest{Entry: []string{"/bin/sh"}, User: "app", Secrets: []string{"a"},
		Services: []abi.Service{{Name: "db", User: "postgres", Secrets: []string{"b"}}, {Name: "w", User: "app", Secrets: []string{"a"}}}}
	if err := checkSecretOwners(m); err != nil {
		t.Fatal(err)
	}
	m.Services[0].Secrets = []string{"a"}
	if err := checkSecretOwners(m); err == nil || !strings.Contains(err.Error(), `secret "a" is declared by the entry (user app) and services.db (user postgres)`) {
		t.Errorf("two owners: %v", err)
	}
}

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
