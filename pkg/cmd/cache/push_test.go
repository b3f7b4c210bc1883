package cache

import (
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmd/push"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestNewCmdPush(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    func(*PushOptions) bool
		wantErr string
	}{
		{nil, func(o *PushOptions) bool { return o.Remote == "" && o.Template == "" && o.Sign == "" }, ""},
		{[]string{"--remote", "r.example/c", "--sign"}, func(o *PushOptions) bool { return o.Remote == "r.example/c" && o.Sign == push.DefaultKey }, ""},
		{[]string{"--template", "api", "--sign=ci"}, func(o *PushOptions) bool { return o.Template == "api" && o.Sign == "ci" }, ""},
		{[]string{"--release", "--readonly"}, func(o *PushOptions) bool { return o.Release && o.Readonly }, ""},
		{[]string{"--template", "api", "--release"}, nil, "none of the others can be"},
		{[]string{"extra"}, nil, "unknown command"},
	} {
		ios, _, _, _ := iostreams.Test()
		var got *PushOptions
		cmd := NewCmdPush(&cmdutil.Factory{IO: ios}, func(o *PushOptions) error { got = o; return nil })
		cmd.SetArgs(tc.args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got == nil || !tc.want(got) {
			t.Errorf("%v: err %v, options %+v", tc.args, err, got)
		}
	}
}
