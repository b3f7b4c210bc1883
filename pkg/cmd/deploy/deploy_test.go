package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/deploy"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

func TestDeployFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string // "" ok
	}{
		{args: []string{"--host", "deploy@web1:2222", "--host", "web2", "--publish", "8080:80", "--name", "api"}},
		{args: []string{}, err: "--host is required"},
		{args: []string{"--host", "-oProxyCommand=sh"}, err: "expected [USER@]HOST[:PORT]"},
		{args: []string{"--host", "web1:99999"}, err: "port"},
		{args: []string{"--host", "web1", "--publish", "x"}, err: "--publish"},
		{args: []string{"--host", "web1", "--name", "../x"}, err: "--name"},
		{args: []string{"--host", "web1", "--connect-timeout", "0s"}, err: "--connect-timeout"},
		{args: []string{"--host", "web1", "--identity", "/nonexistent/key"}, err: "--identity"},
		{args: []string{"--host", "web1", "--image", "a.img", "reg.example/x:v1"}, err: "give one"},
		{args: []string{"--host", "web1", "--image", "a.img", "--template", "api"}, err: "give one"},
		{args: []string{"--host", "web1", "--template", "../x"}, err: "--template"},
	} {
		ios, _, _, _ := iostreams.Test()
		f := &cmdutil.Factory{IO: ios}
		var got *Options
		cmd := NewCmdDeploy(f, func(ctx context.Context, o *Options) error { got = o; return nil })
		cmd.SetArgs(c.args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		err := cmd.Execute()
		if c.err != "" {
			var ue *cmdutil.UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v; want a usage error with %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		want := []deploy.Target{{User: "deploy", Host: "web1", Port: 2222}, {Host: "web2"}}
		if len(got.hosts) != 2 || got.hosts[0] != want[0] || got.hosts[1] != want[1] || got.Name != "api" ||
			got.sshOpts.ConnectTimeout != 10*time.Second || got.HealthTimeout != deploy.DefaultHealthTimeout {
			t.Errorf("%v: parsed %+v %+v", c.args, got.hosts, got.sshOpts)
		}
	}
}
