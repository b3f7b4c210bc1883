package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The templates journey on one shell project with two roles: variants built through --config
// (two images; the variant differing only in run settings shares its revision), each role
// booted once with its own output, a no-op rebuild, a source change making a new revision,
// rollback, ps/logs of a template's guest, a damaged stored image refused before boot, and
// the store's bad input. Three boots in all.
func TestTemplateLifecycle(t *testing.T) {
	skipShort(t)
	store := filepath.Join(t.TempDir(), "templates")
	t.Setenv("UKERNEL_TEMPLATES", store)
	dir := newProject(t, "tplshop", "--lang", "shell", "--template", "minimal")
	cfg, err := os.ReadFile(filepath.Join(dir, "ukernel.toml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ukernel.toml"), string(cfg)+`
[roles.api]
entry = "src/api.sh"

[roles.worker]
entry = "src/worker.sh"
[roles.worker.run.env]
QUEUE = "jobs"
`)
	writeFile(t, filepath.Join(dir, "src/api.sh"), "echo \"api v1 role=$UKERNEL_ROLE\"\n")
	// The data volume is the template's run setting (data_mb), not the image's.
	writeFile(t, filepath.Join(dir, "src/worker.sh"), "echo \"worker role=$UKERNEL_ROLE queue=$QUEUE\"\nwhile read -r _ m _; do [ \"$m\" = /data ] && echo data=mounted; done < /proc/mounts\nexit 0\n")
	writeFile(t, filepath.Join(dir, "variants.toml"), `name = "tplshop"

[[variants]]
role = "api"

[[variants]]
role = "worker"

[[variants]]
name = "tplshop-big"
role = "worker"
memory_mb = 320
data_mb = 16
`)

	type built struct {
		Name     string `json:"name"`
		Outcome  string `json:"outcome"`
		Previous string `json:"previous"`
		Revision struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"revision"`
	}
	build := func(args ...string) []built {
		t.Helper()
		r := mustUK(t, dir, 10*time.Minute, append([]string{"--json", "template", "build"}, args...)...)
		var out []built
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("template build --json: %v\n%s", err, r.stdout)
		}
		return out
	}
	res := build("--config", "variants.toml")
	if len(res) != 3 || res[0].Outcome != "built" || res[1].Outcome != "built" || res[2].Outcome != "reused" ||
		res[0].Revision.Role != "api" || res[1].Revision.ID != res[2].Revision.ID || res[0].Revision.ID == res[1].Revision.ID {
		t.Fatalf("variants: %+v", res)
	}
	apiV1, workerRev := res[0].Revision.ID, res[1].Revision.ID
	// The shared revision is one file on disk.
	a, errA := os.Stat(filepath.Join(store, "tplshop-worker/revisions", workerRev, "image.img"))
	b, errB := os.Stat(filepath.Join(store, "tplshop-big/revisions", workerRev, "image.img"))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Fatalf("variants differing in run settings do not share the image: %v %v", errA, errB)
	}
	// Unchanged inputs: nothing to do.
	if r := build("tplshop-api"); r[0].Outcome != "up-to-date" || r[0].Revision.ID != apiV1 {
		t.Fatalf("no-op build: %+v", r)
	}

	// From another directory: the worker variant with its own data volume.
	elsewhere := t.TempDir()
	r := mustUK(t, elsewhere, 3*time.Minute, "run", "--template", "tplshop-big", "--accel", "tcg")
	if !strings.Contains(r.stdout, "worker role=worker queue=jobs") || !strings.Contains(r.stdout, "data=mounted") {
		t.Fatalf("worker variant output:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(store, "tplshop-big", ".ukernel", "data.img")); err != nil {
		t.Errorf("the template's data volume is not kept with it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "logs")); err == nil {
		t.Error("a template's run wrote logs into its source project")
	}

	// A source change makes a new revision; it boots; rollback brings back the first one.
	writeFile(t, filepath.Join(dir, "src/api.sh"), "echo \"api v2 role=$UKERNEL_ROLE\"\n")
	// A build killed with its image packed but not yet stored leaves the current revision, and
	// nothing of its own in the store; the next build sweeps what it left.
	if r := ukEnv(t, dir, 10*time.Minute, []string{"UKERNEL_TEST_CRASH_AT=pack-image"}, "template", "build", "tplshop-api"); r.code != -1 {
		t.Fatalf("the build was not killed at pack-image: exit %d\n%s", r.code, r.stderr)
	}
	r = mustUK(t, dir, time.Minute, "--json", "template", "info", "tplshop-api")
	var info struct {
		Current   struct{ ID string } `json:"current"`
		Revisions int                 `json:"revisions"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.Current.ID != apiV1 || info.Revisions != 1 {
		t.Fatalf("after a killed build: %v %s", err, r.stdout)
	}
	// A store that runs out of space while the image is packed into it: the build fails naming
	// the file, and nothing of it stays (nor a revision, nor its pending directory).
	full := mountTmpfs(t, 4<<20)
	fullEnv := []string{"UKERNEL_TEMPLATES=" + full}
	if r := ukEnv(t, dir, time.Minute, fullEnv, "template", "create", "tplshop-full", "--role", "api"); r.code != 0 {
		t.Fatalf("create in the small store: %d %s", r.code, r.stderr)
	}
	if r := ukEnv(t, dir, 10*time.Minute, fullEnv, "template", "build", "tplshop-full"); r.code != 1 || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("build into a full store: exit %d\n%s", r.code, r.stderr)
	}
	if ents, err := os.ReadDir(filepath.Join(full, "tplshop-full/revisions")); err != nil || len(ents) != 0 {
		t.Errorf("a build that ran out of space left %v (%v)", ents, err)
	}
	res = build("tplshop-api")
	if ents, _ := os.ReadDir(filepath.Join(store, "tplshop-api/revisions")); len(ents) != 2 {
		t.Errorf("revisions/ after the rebuild holds %d entries, want the 2 revisions only", len(ents))
	}
	if res[0].Outcome != "built" || res[0].Revision.ID == apiV1 || res[0].Previous != apiV1 {
		t.Fatalf("after a source change: %+v", res)
	}
	apiV2 := res[0].Revision.ID
	mustUK(t, elsewhere, time.Minute, "template", "rollback", "tplshop-api")
	r = mustUK(t, elsewhere, 3*time.Minute, "run", "--template", "tplshop-api", "--accel", "tcg")
	if !strings.Contains(r.stdout, "api v1 role=api") {
		t.Fatalf("after rollback, the api role printed:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	r = mustUK(t, elsewhere, 3*time.Minute, "run", "--template", "tplshop-api@"+apiV2[:10], "--accel", "tcg")
	if !strings.Contains(r.stdout, "api v2 role=api") {
		t.Fatalf("NAME@REV printed:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	// ps and logs know the template's guest.
	r = mustUK(t, elsewhere, time.Minute, "--json", "ps", "-a")
	var guests []struct{ Name, Template, Revision string }
	json.Unmarshal([]byte(r.stdout), &guests)
	found := false
	for _, g := range guests {
		found = found || g.Name == "tplshop-api" && g.Template == "tplshop-api" && g.Revision == apiV2
	}
	if !found {
		t.Errorf("ps -a does not show the template and revision:\n%s", r.stdout)
	}
	if r := mustUK(t, elsewhere, time.Minute, "logs", "tplshop-api"); !strings.Contains(r.stdout, "api v2") {
		t.Errorf("logs of the template's guest:\n%s", r.stdout)
	}

	// Bad input, each refused clearly.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--template", "tplshop-apu"}, `no template "tplshop-apu"; templates: tplshop-api, tplshop-big, tplshop-worker`},
		{[]string{"run", "--template", "tplshop-api@abcdef01"}, "its revisions: "},
		{[]string{"template", "create", "x", "--role", "web"}, `its roles: api, worker`},
		{[]string{"template", "edit", "tplshop-api", "--vcpu", "64"}, "expected 1-32"},
	} {
		r := uk(t, dir, time.Minute, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("ukernel %s: exit %d, stderr %q; want %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	moved := dir + "-moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if r := uk(t, elsewhere, time.Minute, "template", "build", "tplshop-api"); r.code != 1 || !strings.Contains(r.stderr, "is gone (moved or deleted); point it at the project with 'ukernel template edit tplshop-api --from DIR'") {
		t.Errorf("build of a moved source: exit %d, %s", r.code, r.stderr)
	}
	os.Rename(moved, dir)

	// A damaged stored image: verify names it, run refuses it before booting.
	img := filepath.Join(store, "tplshop-api/revisions", apiV1, "image.img")
	os.Chmod(img, 0o644)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.WriteAt([]byte("damage"), fi.Size()/2)
	f.Close()
	if r := uk(t, elsewhere, time.Minute, "template", "verify", "tplshop-api"); r.code != 1 || !strings.Contains(r.stdout, apiV1[:12]+"  DAMAGED") || !strings.Contains(r.stderr, "template build --force tplshop-api") {
		t.Errorf("verify of a damaged revision: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := uk(t, elsewhere, time.Minute, "run", "--template", "tplshop-api", "--accel", "tcg"); r.code != 125 || !strings.Contains(r.stderr, "is damaged") || strings.Contains(r.stderr, "QEMU started") {
		t.Errorf("run of a damaged revision: exit %d\n%s", r.code, r.stderr)
	}

	// Deleting one template leaves the revision it shares whole in the other.
	mustUK(t, elsewhere, time.Minute, "template", "delete", "tplshop-worker")
	mustUK(t, elsewhere, time.Minute, "template", "verify", "tplshop-big")
	if r := mustUK(t, elsewhere, time.Minute, "--json", "template", "edit", "tplshop-big", "--vcpu", "2"); !strings.Contains(r.stdout, `"rebuild": false`) {
		t.Errorf("edit of a run setting: %s", r.stdout)
	}
}
