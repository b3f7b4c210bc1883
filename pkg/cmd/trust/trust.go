// Package trust is `ukernel trust`: the public keys whose signatures the trust policy accepts.
package trust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
	"github.com/ukernel-dev/ukernel/internal/sign"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
	"github.com/ukernel-dev/ukernel/pkg/cmdutil"
	"github.com/ukernel-dev/ukernel/pkg/iostreams"
)

// Options are the inputs of a trust command.
type Options struct {
	IO   *iostreams.IOStreams
	Dir  func() (string, error) // the project directory, for relative key paths
	JSON bool
	Arg  string // KEY.pub (add) or NAME (remove)
	Name string // add --name
}

// Trusted is one trusted key as --json prints it.
type Trusted struct {
	Name  string `json:"name"`
	KeyID string `json:"key_id"`
	Path  string `json:"path"`
}

// NewCmdTrust returns `ukernel trust` and its subcommands; runF replaces their run (tests).
func NewCmdTrust(f *cmdutil.Factory, runF func(sub string, o *Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust <command>",
		Short: "Manage the keys whose signatures are trusted",
		Long: `Trusted keys are minisign public keys kept in $XDG_CONFIG_HOME/ukernel/trusted/NAME.pub.
The [trust] section of config.toml says which references must be signed by one of them
(require) and may narrow them to some names (keys); docs/CONFIG.md.`,
	}
	o := &Options{IO: f.IO, Dir: f.ProjectDir}
	run := func(sub string, fn func(*Options) error) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			o.JSON = f.JSON
			if len(args) > 0 {
				o.Arg = args[0]
			}
			if runF != nil {
				return runF(sub, o)
			}
			return fn(o)
		}
	}
	add := &cobra.Command{
		Use:     "add KEY.pub",
		Short:   "Trust a public key",
		Example: "  ukernel trust add release.pub\n  ukernel trust add ci.pub --name ci",
		Args:    cobra.ExactArgs(1),
		RunE:    run("add", addRun),
	}
	add.Flags().StringVar(&o.Name, "name", "", "name to trust it under (default: the file name without .pub)")
	cmd.AddCommand(add)
	cmd.AddCommand(&cobra.Command{Use: "list", Short: "List the trusted keys", Args: cobra.NoArgs, RunE: run("list", listRun)})
	cmd.AddCommand(&cobra.Command{Use: "remove NAME", Short: "Stop trusting a key", Args: cobra.ExactArgs(1), RunE: run("remove", removeRun)})
	return cmd
}

func addRun(o *Options) error {
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	dir, err := o.Dir()
	if err != nil {
		return err
	}
	src := cmdutil.ProjectPath(dir, o.Arg)
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	k, err := sign.ParsePublicKey(data)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	name := o.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(src), ".pub")
	}
	if err := userconfig.ValidKeyName(name); err != nil {
		return cmdutil.Usagef("%v; choose one with --name", err)
	}
	dst := filepath.Join(cfg.TrustedDir(), name+".pub")
	// Never over a key trusted under the name (another add may race with this one).
	if err := atomicfile.WriteNew(dst, k.Marshal(), 0o644); errors.Is(err, fs.ErrExist) {
		if old, rerr := os.ReadFile(dst); rerr == nil {
			if ok, perr := sign.ParsePublicKey(old); perr == nil && ok.ID == k.ID {
				return printAdded(o, Trusted{Name: name, KeyID: k.ID.String(), Path: dst})
			}
		}
		return fmt.Errorf("%s already trusts another key under the name %s; choose another with --name, or 'ukernel trust remove %s' first", dst, name, name)
	} else if err != nil {
		return err
	}
	return printAdded(o, Trusted{Name: name, KeyID: k.ID.String(), Path: dst})
}

func printAdded(o *Options, t Trusted) error {
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, t)
	}
	fmt.Fprintf(o.IO.Out, "Trusted %s (key %s): %s\n", t.Name, t.KeyID, t.Path)
	return nil
}

func listRun(o *Options) error {
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	keys, err := cfg.TrustedKeys()
	if err != nil {
		return err
	}
	out := []Trusted{}
	for _, k := range keys {
		out = append(out, Trusted{Name: k.Name, KeyID: k.Key.ID.String(), Path: filepath.Join(cfg.TrustedDir(), k.Name+".pub")})
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, out)
	}
	if len(out) == 0 {
		fmt.Fprintf(o.IO.Out, "No trusted key (add one with 'ukernel trust add KEY.pub')\n")
	}
	for _, t := range out {
		fmt.Fprintf(o.IO.Out, "%-20s %s\n", t.Name, t.KeyID)
	}
	if len(cfg.File.Trust.Require) > 0 {
		fmt.Fprintf(o.IO.Out, "Signatures required for: %s\n", strings.Join(cfg.File.Trust.Require, ", "))
	}
	return nil
}

func removeRun(o *Options) error {
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	if err := userconfig.ValidKeyName(o.Arg); err != nil {
		return cmdutil.Usagef("%v", err)
	}
	p := filepath.Join(cfg.TrustedDir(), o.Arg+".pub")
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no trusted key named %s ('ukernel trust list' shows them)", o.Arg)
	} else if err != nil {
		return err
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, map[string]string{"removed": o.Arg, "path": p})
	}
	fmt.Fprintf(o.IO.Out, "No longer trusted: %s\n", o.Arg)
	return nil
}
