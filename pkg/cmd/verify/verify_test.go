package verify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// An existing file is verified as an image; anything else is a reference.
func TestLocalOrReference(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "not-an-image.img"), []byte("hello"), 0o644)
	for args, want := range map[string]string{
		"not-an-image.img":                         "not-an-image.img",
		"oci-layout:" + filepath.Join(dir, "nope"): "OCI layout",
		"Not A Reference":                          "reference",
		// A mistyped path: no registry is asked (./x.img is not host "."), both readings fail.
		"./dist/nope.img": "no image file " + filepath.Join(dir, "dist", "nope.img") + ", and reference",
	} {
		ios, _, _, _ := iostreams.Test()
		cmd := NewCmdVerify(&cmdutil.Factory{IO: ios, Dir: dir}, nil)
		cmd.SetArgs([]string{args})
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), want) || cmdutil.ExitCode(err) != 1 {
			t.Errorf("verify %q: %v (exit %d), want an error naming %q", args, err, cmdutil.ExitCode(err), want)
		}
	}
}
