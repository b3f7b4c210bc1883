package run

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ukernel-dev/ukernel/internal/abi"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/vmm/launch"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// The flags are parsed and checked without building or booting anything.
func TestNewCmdRun(t *testing.T) {
	parse := func(args ...string) (*Options, error) {
		ios, _, _, _ := iostreams.Test()
		var got *Options
		cmd := NewCmdRun(&cmdutil.Factory{IO: ios, JSON: true, Executable: "/bin/ukernel"}, func(o *Options) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(ios.Out)
		cmd.SetErr(ios.ErrOut)
		return got, cmd.Execute()
	}
	o, err := parse()
	if err != nil || o.VCPU != 0 || o.MemoryMB != 0 || o.Net != "" || o.net != (abi.Net{}) || o.Accel != "auto" || o.Backend != "auto" ||
		o.StopTimeout != launch.DefaultStopTimeout || o.Detach || !o.JSON || o.Executable != "/bin/ukernel" {
		t.Errorf("run: %v %+v; want the image's settings, auto, the default stop timeout", err, o)
	}
	o, err = parse("-d", "--name", "api", "--vcpu", "32", "--memory", "64", "--net", "tap:tap0", "--publish", "8080:80", "--publish", "9090:90",
		"-e", "A=1", "--env-file", "app.env", "--secret", "tok", "--image", "dist/a.img", "--accel", "kvm", "--backend", "qemu",
		"--offline", "--locked", "--stop-timeout", "3s", "--data-mb", "128")
	if err != nil || !o.Detach || o.Name != "api" || o.VCPU != 32 || o.MemoryMB != 64 || o.net.Mode != abi.NetTap || o.net.Iface != "tap0" ||
		!slices.Equal(o.Publish, []string{"8080:80", "9090:90"}) || !slices.Equal(o.Env, []string{"A=1"}) || !slices.Equal(o.EnvFiles, []string{"app.env"}) ||
		!slices.Equal(o.Secrets, []string{"tok"}) || o.Image != "dist/a.img" || o.Accel != "kvm" || o.Backend != "qemu" || !o.Offline || !o.Locked ||
		o.StopTimeout != 3*time.Second || o.DataMB != 128 {
		t.Errorf("run with every flag: %v %+v", err, o)
	}
	// The ranges are ukernel.toml's.
	for _, args := range [][]string{
		{"--vcpu", strconv.Itoa(project.MaxVCPU + 1)}, {"--vcpu", "-1"}, {"--memory", strconv.Itoa(project.MinMemoryMB - 1)}, {"--memory", strconv.Itoa(project.MaxMemoryMB + 1)},
		{"--data-mb", "-1"}, {"--data-mb", strconv.Itoa(project.MaxDataMB + 1)},
	} {
		if o, err := parse(args...); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), args[0]+" "+args[1]+" is out of range") || o != nil {
			t.Errorf("run %q: %v; want a usage error before running", args, err)
		}
	}
	for _, args := range [][]string{{"--vcpu", strconv.Itoa(project.MaxVCPU)}, {"--memory", strconv.Itoa(project.MaxMemoryMB)}, {"--data-mb", strconv.Itoa(project.MaxDataMB)}} {
		if _, err := parse(args...); err != nil {
			t.Errorf("run %q: %v", args, err)
		}
	}
	// --cold and --restore choose how a template starts.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cold"}, "they need --template NAME"},
		{[]string{"--restore"}, "they need --template NAME"},
		{[]string{"--template", "api", "--cold", "--restore"}, "exclude each other"},
	} {
		if o, err := parse(tc.args...); cmdutil.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || o != nil {
			t.Errorf("run %q: %v; want a usage error saying %q", tc.args, err, tc.want)
		}
	}
	if o, err := parse("--template", "api", "--restore"); err != nil || !o.Restore || o.Cold {
		t.Errorf("run --template api --restore: %v %+v", err, o)
	}
}
