package pull

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestTemplatePullRef(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	ios, _, _, _ := iostreams.Test()
	f := &cmdutil.Factory{IO: ios, Dir: "."}
	for _, tc := range []struct {
		env  string
		args []string
		want string
		err  string
	}{
		{args: []string{"api", "h.io/team/api:v3"}, want: "h.io/team/api:v3 api"},
		{env: "h.io/templates/", args: []string{"api"}, want: "h.io/templates/api:latest api"},
		{env: "h.io/templates", args: []string{"api", "--revision", "2494a2a74409"}, want: "h.io/templates/api:2494a2a74409 api"},
		{args: []string{"api"}, err: "[templates] repository"},
		{args: []string{"Bad_Name", "h.io/x:v1"}, err: "Bad_Name"},
	} {
		t.Setenv("UKERNEL_TEMPLATE_REPOSITORY", tc.env)
		var got string
		cmd := NewCmdTemplatePull(f, func(o *Options) error { got = o.Ref + " " + o.Template; return nil })
		cmd.SetArgs(tc.args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.args, got, err, tc.want)
		}
	}
}
