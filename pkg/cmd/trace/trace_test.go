package trace_test

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ukernel-dev/ukernel/pkg/cmd/root"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ukernel": func() { os.Exit(root.Main()) },
	})
}

// TestScripts drives the real ukernel binary through testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
