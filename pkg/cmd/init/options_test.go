package initcmd

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// The flags are parsed and checked (usage errors, the prompt's language) without running init.
func TestNewCmdInit(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    Options
		wantErr string
	}{
		{args: []string{"--name", "api", "--lang", "go", "--template", "http", "--force"},
			want: Options{Name: "api", Lang: "go", Template: "http", Force: true}},
		{args: []string{"--name", "api", "--prompt", "a go http server"},
			want: Options{Name: "api", Lang: "go", Prompt: "a go http server", PromptGiven: true}},
		{args: []string{"--lang", "go"}, wantErr: "--name is required"},
		{args: []string{"--name", "Bad_Name"}, wantErr: "Bad_Name"},
		{args: []string{"--name", "api", "--template", "nosuch"}, wantErr: `unknown preset "nosuch"`},
		{args: []string{"--name", "api", "--prompt", " "}, wantErr: "--prompt is empty"},
		{args: []string{"--name", "api", "--prompt", "a rust service"}, wantErr: "which ukernel does not build"},
		{args: []string{"api"}, wantErr: "the name is given with --name"},
	} {
		ios, _, _, _ := iostreams.Test()
		var got *Options
		cmd := NewCmdInit(&cmdutil.Factory{IO: ios}, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || cmdutil.ExitCode(err) != 2 {
				t.Errorf("%q: err %v (exit %d), want usage error %q", tc.args, err, cmdutil.ExitCode(err), tc.wantErr)
			}
			if got != nil {
				t.Errorf("%q: ran despite the error", tc.args)
			}
			continue
		}
		if err != nil || got == nil {
			t.Fatalf("%q: err %v", tc.args, err)
		}
		g := *got
		if g.Name != tc.want.Name || g.Lang != tc.want.Lang || g.Template != tc.want.Template || g.Prompt != tc.want.Prompt ||
			g.PromptGiven != tc.want.PromptGiven || g.Force != tc.want.Force {
			t.Errorf("%q: options %+v, want %+v", tc.args, g, tc.want)
		}
	}
}
