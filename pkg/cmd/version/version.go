// Package version implements `ukernel version` (and the root's --version).
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	iversion "github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of `version`.
type Options struct {
	IO   *iostreams.IOStreams
	JSON bool
	Info iversion.Info // the versions to report
}

// NewCmdVersion returns the version command, which reports info. runF, when set, is called
// with the parsed options instead of Run (tests).
func NewCmdVersion(f *cmdutil.Factory, info iversion.Info, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Info: info}
	return &cobra.Command{
		Use:         "version",
		Annotations: map[string]string{cmdutil.InterruptibleAnnotation: "true"},
		Short:       "Print ukernel's version, the Go version that built it and the guest ABI version",
		Long: `Version prints the version of ukernel, of the Go toolchain that built it and of the ABI
between host and guest (an image packed by a ukernel with another ABI major.minor must be
packed again). ukernel --version prints the same.`,
		Example: "  ukernel version\n  ukernel version --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if runF != nil {
				return runF(opts)
			}
			return Run(opts)
		},
	}
}

// Run writes the versions: one line, or an object under --json. The root's --version calls it
// too.
func Run(opts *Options) error {
	if opts.JSON {
		return cmdutil.PrintJSON(opts.IO, opts.Info)
	}
	_, err := fmt.Fprintln(opts.IO.Out, opts.Info)
	return err
}
