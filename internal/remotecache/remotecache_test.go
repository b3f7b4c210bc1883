package remotecache

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
)

func TestResolvePrecedence(t *testing.T) {
	proj := &project.Config{Cache: project.CacheSection{Remote: "proj.example/team/cache"}}
	user := &userconfig.Config{File: userconfig.File{Cache: userconfig.CacheSection{Remote: "user.example/me/cache/"}}}
	for _, tc := range []struct {
		name, flag, env string
		proj            *project.Config
		want, from      string
	}{
		{"flag first", "flag.example/c", "env.example/c", proj, "flag.example/c", "--remote"},
		{"environment over project", "", "env.example/c", proj, "env.example/c", Env},
		{"project over user", "", "", proj, "proj.example/team/cache", "ukernel.toml [cache] remote"},
		{"user last, without its slash", "", "", nil, "user.example/me/cache", "config.toml [cache] remote"},
		{"off turns it off", "", "off", proj, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(Env, tc.env)
			t.Setenv(PushEnv, "")
			s, err := Resolve(tc.flag, tc.proj, user)
			if err != nil || s.Remote != tc.want || s.From != tc.from || s.Push {
				t.Fatalf("got %+v, %v; want %s from %s, read-only", s, err, tc.want, tc.from)
			}
		})
	}
}

func TestResolveWriters(t *testing.T) {
	t.Setenv(Env, "")
	t.Setenv(PushEnv, "")
	// A project cannot make its readers writers: push is a user setting.
	s, _ := Resolve("r.example/c", &project.Config{}, &userconfig.Config{})
	if s.Push {
		t.Fatal("read-only is the default")
	}
	s, _ = Resolve("r.example/c", nil, &userconfig.Config{File: userconfig.File{Cache: userconfig.CacheSection{Push: true}}})
	if !s.Push {
		t.Fatal("[cache] push = true makes a writer")
	}
	t.Setenv(PushEnv, "1")
	if s, _ = Resolve("r.example/c", nil, &userconfig.Config{}); !s.Push {
		t.Fatal(PushEnv + "=1 makes a writer")
	}
}

func TestResolveRejectsNonRepositories(t *testing.T) {
	t.Setenv(Env, "")
	for _, bad := range []string{"r.example/c:v1", "r.example/c@sha256:" + strings.Repeat("a", 64), "oci-layout:/tmp/x", "Not A Ref"} {
		if _, err := Resolve(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "--remote") {
			t.Errorf("%q: want an error naming where it was set, got %v", bad, err)
		}
	}
}

func TestTag(t *testing.T) {
	key := strings.Repeat("0123456789abcdef", 4)
	// A tag is at most 128 of [A-Za-z0-9_.-]: the whole key fits.
	if tag := Tag(key); tag != "ukernel-cache-"+key || len(tag) > 128 {
		t.Fatalf("Tag: %s", tag)
	}
}
