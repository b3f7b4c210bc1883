package push

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func factory() *cmdutil.Factory {
	ios, _, _, _ := iostreams.Test()
	return &cmdutil.Factory{IO: ios, Dir: "."}
}

func TestPushFlags(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, tc := range []struct {
		args []string
		want func(*Options) bool
		err  string
	}{
		{args: []string{"h.io/r:v1"}, want: func(o *Options) bool { return o.Ref == "h.io/r:v1" && o.Sign == "" && o.Image == "" }},
		{args: []string{"h.io/r:v1", "--sign"}, want: func(o *Options) bool { return o.Sign == DefaultKey }},
		{args: []string{"h.io/r:v1", "--sign=release", "--insecure"}, want: func(o *Options) bool { return o.Sign == "release" && o.Flags.Insecure }},
		{args: []string{"h.io/r:v1", "--template", "api@abcd"}, want: func(o *Options) bool { return o.Template == "api@abcd" }},
		{args: []string{"h.io/r:v1", "--image", "x.img", "--template", "api"}, err: "none of the others can be"},
		{args: []string{}, err: "one reference"},
	} {
		var got *Options
		cmd := NewCmdPush(factory(), func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || !tc.want(got) {
			t.Errorf("%v: %+v %v", tc.args, got, err)
		}
	}
}

func TestTemplatePushNeedsARepository(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("UKERNEL_TEMPLATE_REPOSITORY", "")
	var refs []string
	cmd := NewCmdTemplatePush(factory(), func(o *Options) error { refs = append(refs, o.Ref+" "+o.Template); return nil })
	cmd.SetArgs([]string{"api", "h.io/team/api:v3", "--revision", "abcd1234"})
	if err := cmd.Execute(); err != nil || len(refs) != 1 || refs[0] != "h.io/team/api:v3 api@abcd1234" {
		t.Fatalf("template push with a REF: %v %v", refs, err)
	}
	cmd = NewCmdTemplatePush(factory(), func(o *Options) error { return nil })
	cmd.SetArgs([]string{"api"})
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "[templates] repository") {
		t.Fatalf("template push without a REF or repository: %v", err)
	}
}
