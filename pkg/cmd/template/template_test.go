package template

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/runstate"
	"github.com/ukernel-dev/ukernel/internal/template"
	initcmd "github.com/ukernel-dev/ukernel/pkg/cmd/init"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Flags are checked (usage errors, exit 2) before anything runs.
func TestFlagChecks(t *testing.T) {
	never := func(t *testing.T) func(any) error {
		return func(any) error { t.Fatal("ran despite a usage error"); return nil }
	}
	for _, tc := range []struct {
		cmd  func(f *cmdutil.Factory) *cobra.Command
		args []string
		want string
	}{
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdCreate(f, func(o *CreateOptions) error { return never(t)(o) })
		}, []string{"api", "--role", "a", "--roles", "a,b"}, "--role and --roles exclude each other"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdCreate(f, func(o *CreateOptions) error { return never(t)(o) })
		}, []string{"api", "--vcpu", "99"}, "vcpu 99 is out of range; expected 1-32"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdCreate(f, func(o *CreateOptions) error { return never(t)(o) })
		}, []string{"Bad_Name"}, "invalid template name"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdCreate(f, func(o *CreateOptions) error { return never(t)(o) })
		}, []string{"api", "--net", "bridge"}, "net:"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdBuild(f, func(o *BuildOptions) error { return never(t)(o) })
		}, nil, "template names, or --config FILE"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdBuild(f, func(o *BuildOptions) error { return never(t)(o) })
		}, []string{"api", "--keep", "0"}, "keep at least 1"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdEdit(f, func(o *EditOptions) error { return never(t)(o) })
		}, []string{"api"}, "nothing to change"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdRollback(f, func(o *RollbackOptions) error { return never(t)(o) })
		}, []string{"api", "zz"}, "revision after @"},
		{func(f *cmdutil.Factory) *cobra.Command {
			return NewCmdInfo(f, func(o *InfoOptions) error { return never(t)(o) })
		}, nil, "takes one template name"},
	} {
		ios, _, _, _ := iostreams.Test()
		cmd := tc.cmd(&cmdutil.Factory{IO: ios})
		cmd.SetArgs(tc.args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &cmdutil.UsageError{Err: err} })
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: %v, want %q", cmd.Name(), tc.args, err, tc.want)
		}
	}
}

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

// env is a store, a project and the options every command gets, with its output.
type env struct {
	store   *template.Store
	project string
	out     *bytes.Buffer
	common  Common
	running []*runstate.State
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	proj := filepath.Join(dir, "shop")
	os.MkdirAll(filepath.Join(proj, "src"), 0o755)
	if err := os.WriteFile(filepath.Join(proj, "ukernel.toml"), []byte(shopToml), 0o644); err != nil {
		t.Fatal(err)
	}
	ios, _, out, _ := iostreams.Test()
	e := &env{store: template.At(filepath.Join(dir, "store")), project: proj, out: out}
	e.common = Common{IO: ios, JSON: true,
		Store:      func() (*template.Store, error) { return e.store, nil },
		ProjectDir: func() (string, error) { return proj, nil },
		Running:    func(string) ([]*runstate.State, error) { return e.running, nil },
		Forget:     func(string) error { return nil },
	}
	return e
}

func TestCreateEditDelete(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// --roles: one template per role; an unknown role writes nothing.
	err := createRun(ctx, &CreateOptions{Common: e.common, Name: "shop", Roles: []string{"api", "web"}})
	if err == nil || !strings.Contains(err.Error(), `role "web" is not defined in ukernel.toml; its roles: api, worker`) {
		t.Fatalf("unknown role: %v", err)
	}
	if names, _ := e.store.Names(); len(names) != 0 {
		t.Fatalf("a failed create wrote %v", names)
	}
	if err := createRun(ctx, &CreateOptions{Common: e.common, Name: "shop", Roles: []string{"api", "worker"}, Run: template.Spec{VCPU: 2}}); err != nil {
		t.Fatal(err)
	}
	var specs []template.Spec
	if err := json.Unmarshal(e.out.Bytes(), &specs); err != nil || len(specs) != 2 || specs[0].Name != "shop-api" || specs[1].Role != "worker" ||
		specs[0].Source != e.project || specs[1].VCPU != 2 {
		t.Fatalf("created: %v %s", err, e.out)
	}
	var ex *template.ExistsError
	if err := createRun(ctx, &CreateOptions{Common: e.common, Name: "shop", Roles: []string{"api"}}); !errors.As(err, &ex) {
		t.Fatalf("create again: %v", err)
	}
	// A source that is not a project.
	if err := createRun(ctx, &CreateOptions{Common: e.common, Name: "x", From: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "ukernel.toml not found") {
		t.Fatalf("not a project: %v", err)
	}

	// Edit: run settings need no rebuild, a role does; a running template is not edited.
	edit := func(set func(*EditOptions)) (*Edited, error) {
		e.out.Reset()
		o := &EditOptions{Common: e.common, Name: "shop-api", Changed: func(f string) bool { return f == "vcpu" || f == "memory" }}
		set(o)
		if err := editRun(ctx, o); err != nil {
			return nil, err
		}
		var got Edited
		return &got, json.Unmarshal(e.out.Bytes(), &got)
	}
	got, err := edit(func(o *EditOptions) { o.Run.VCPU, o.Run.MemoryMB = 4, 512 })
	if err != nil || got.Rebuild || len(got.Changes) != 2 || got.Changes[0] != "vcpu: 2 -> 4" {
		t.Fatalf("edit run settings: %+v %v", got, err)
	}
	// A setting left to the image is said so, as template info says it, not as 0.
	if got.Changes[1] != "memory_mb: image's -> 512" {
		t.Errorf("edit memory_mb from the image's: %q", got.Changes[1])
	}
	role := "worker"
	got, err = edit(func(o *EditOptions) { o.Role, o.Changed = &role, func(string) bool { return false } })
	if err != nil || !got.Rebuild || got.Spec.Role != "worker" || got.Spec.VCPU != 4 {
		t.Fatalf("edit role: %+v %v", got, err)
	}
	bad := "nosuch"
	if _, err := edit(func(o *EditOptions) { o.Role = &bad }); err == nil || !strings.Contains(err.Error(), "its roles: api, worker") {
		t.Fatalf("edit to an unknown role: %v", err)
	}
	e.running = []*runstate.State{{Name: "shop-api", Template: "shop-api"}}
	if _, err := edit(func(o *EditOptions) { o.Run.VCPU = 1 }); err == nil || !strings.Contains(err.Error(), "running guest (shop-api)") {
		t.Fatalf("edit while running: %v", err)
	}
	if spec, _ := e.store.Get("shop-api"); spec.VCPU != 4 || spec.MemoryMB != 512 {
		t.Fatalf("a refused edit wrote: %+v", spec)
	}

	// Delete refuses a running template, --force stops it first.
	var stopped []string
	del := &DeleteOptions{Common: e.common, Name: "shop-api",
		Stop: func(_ context.Context, name string) error { stopped = append(stopped, name); return nil }}
	if err := deleteRun(ctx, del); err == nil || !strings.Contains(err.Error(), "--force stops it") {
		t.Fatalf("delete while running: %v", err)
	}
	del.Force = true
	if err := deleteRun(ctx, del); err != nil || len(stopped) != 1 {
		t.Fatalf("delete --force: %v, stopped %v", err, stopped)
	}
	if _, err := e.store.Get("shop-api"); err == nil {
		t.Fatal("deleted template still there")
	}

	// List and info of a template never built.
	e.out.Reset()
	if err := listRun(&ListOptions{Common: e.common}); err != nil {
		t.Fatal(err)
	}
	var rows []Listed
	if err := json.Unmarshal(e.out.Bytes(), &rows); err != nil || len(rows) != 1 || rows[0].Name != "shop-worker" || rows[0].Current != nil || rows[0].Snapshot != "none" {
		t.Fatalf("list: %v %s", err, e.out)
	}
	// A source that moved is said so by info.
	os.Rename(e.project, e.project+"-moved")
	e.out.Reset()
	if err := infoRun(&InfoOptions{Common: e.common, Name: "shop-worker"}); err != nil {
		t.Fatal(err)
	}
	var info Listed
	if err := json.Unmarshal(e.out.Bytes(), &info); err != nil || !strings.Contains(info.SourceProblem, "is gone") {
		t.Fatalf("info of a template whose source moved: %v %s", err, e.out)
	}
	if err := infoRun(&InfoOptions{Common: e.common, Name: "shop-wroker"}); err == nil || !strings.Contains(err.Error(), "templates: shop-worker") {
		t.Fatalf("info of an unknown template: %v", err)
	}
}

// template init writes ./NAME as init does and registers it; a second one of the name writes
// nothing.
func TestInit(t *testing.T) {
	e := newEnv(t)
	parent := t.TempDir()
	e.common.ProjectDir = func() (string, error) { return parent, nil }
	io := initcmd.NewOptions(&cmdutil.Factory{IO: e.common.IO})
	io.Name, io.Lang, io.Template = "jobs", "shell", "worker"
	if err := io.Check(); err != nil {
		t.Fatal(err)
	}
	o := &InitOptions{Common: e.common, Name: "jobs", Init: io, Scaffold: initcmd.Run}
	if err := initRun(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	var spec template.Spec
	if err := json.Unmarshal(e.out.Bytes(), &spec); err != nil || spec.Source != filepath.Join(parent, "jobs") {
		t.Fatalf("template init --json: %v %s", err, e.out)
	}
	if _, err := os.Stat(filepath.Join(parent, "jobs", "ukernel.toml")); err != nil {
		t.Fatalf("no project written: %v", err)
	}
	scaffolded := false
	o.Scaffold = func(context.Context, *initcmd.Options) error { scaffolded = true; return nil }
	var ex *template.ExistsError
	if err := initRun(t.Context(), o); !errors.As(err, &ex) || scaffolded {
		t.Fatalf("second init: %v, scaffolded %v", err, scaffolded)
	}
}
