// Package regflags holds the flags push, pull and verify share: the registry transport
// (--insecure, --username, --password-stdin) and the deadline of the whole transfer.
package regflags

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/oci"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Flags are the parsed transport flags.
type Flags struct {
	Insecure      bool
	Username      string
	PasswordStdin bool
	Timeout       time.Duration
}

// Add registers the flags on cmd.
func (fl *Flags) Add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&fl.Insecure, "insecure", false, "plain HTTP, for a registry on a loopback address or listed in config.toml with insecure = true")
	cmd.Flags().StringVar(&fl.Username, "username", "", "registry user name (with --password-stdin); default: docker's config.json, or REGISTRY_AUTH_FILE")
	cmd.Flags().BoolVar(&fl.PasswordStdin, "password-stdin", false, "read the registry password from stdin")
	cmd.Flags().DurationVar(&fl.Timeout, "timeout", 30*time.Minute, "give up when the whole transfer takes longer")
}

// Options returns the transport options, reading the password from in when asked.
func (fl *Flags) Options(ios *iostreams.IOStreams, cfg *userconfig.Config, log *slog.Logger) (oci.Options, error) {
	o := oci.Options{Insecure: fl.Insecure, Username: fl.Username, Config: cfg, Logger: log, Progress: ios.Progress()}
	if fl.PasswordStdin != (fl.Username != "") {
		return o, cmdutil.Usagef("--username and --password-stdin go together")
	}
	if fl.PasswordStdin {
		line, err := bufio.NewReader(io.LimitReader(ios.In, 64<<10)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return o, err
		}
		o.Password = strings.TrimRight(line, "\r\n")
		if o.Password == "" {
			return o, cmdutil.Usagef("--password-stdin: no password on stdin")
		}
	}
	return o, nil
}

// Context bounds ctx by --timeout.
func (fl *Flags) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	if fl.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, fl.Timeout)
}
