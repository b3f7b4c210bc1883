// Package version implements `ukernel version` (and the root's --version).
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	iversion "github.com/ukernel-dev/ukernel/internal/version"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
)

// NewCmdVersion returns the version command, which reports v.
func NewCmdVersion(f *cmdutil.Factory, v iversion.Info) *cobra.Command {
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
			return Print(f, v)
		},
	}
}

// Print writes the versions: one line, or an object under --json.
func Print(f *cmdutil.Factory, v iversion.Info) error {
	if f.JSON {
		return f.PrintJSON(v)
	}
	_, err := fmt.Fprintln(f.IO.Out, v)
	return err
}
