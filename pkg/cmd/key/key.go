// Package key is `ukernel key`: the user's signing keys (minisign format) in the keys directory.
package key

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

// Options are the inputs of a key command.
type Options struct {
	IO   *iostreams.IOStreams
	JSON bool
	Name string
}

// Key is one key pair as --json prints it.
type Key struct {
	Name    string `json:"name"`
	KeyID   string `json:"key_id"`
	Private string `json:"private,omitempty"`
	Public  string `json:"public"`
}

// NewCmdKey returns `ukernel key` and its subcommands; runF replaces their run (tests).
func NewCmdKey(f *cmdutil.Factory, runF func(sub string, o *Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key <command>",
		Short: "Create and list signing keys",
		Long: `Signing keys are Ed25519 key pairs in minisign's format, kept in
$XDG_CONFIG_HOME/ukernel/keys/ (NAME.key, mode 0600, and NAME.pub). push --sign signs
with one; others trust its NAME.pub with 'ukernel trust add'.`,
	}
	run := func(sub string, fn func(*Options) error) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, args []string) error {
			o := &Options{IO: f.IO, JSON: f.JSON}
			if len(args) > 0 {
				o.Name = args[0]
			}
			if runF != nil {
				return runF(sub, o)
			}
			return fn(o)
		}
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "generate NAME",
		Short:   "Create a signing key pair",
		Example: "  ukernel key generate release\n  ukernel push registry.example.com/team/worker:v1 --sign=release",
		Args:    cobra.ExactArgs(1),
		RunE:    run("generate", generateRun),
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the signing keys",
		Args:  cobra.NoArgs,
		RunE:  run("list", listRun),
	})
	return cmd
}

func generateRun(o *Options) error {
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	if err := userconfig.ValidKeyName(o.Name); err != nil {
		return cmdutil.Usagef("%v", err)
	}
	dir := cfg.KeysDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	priv := filepath.Join(dir, o.Name+".key")
	pub := filepath.Join(dir, o.Name+".pub")
	for _, p := range []string{priv, pub} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s already exists: choose another name, or remove it first (a lost key cannot be recovered)", p)
		}
	}
	k, err := sign.Generate()
	if err != nil {
		return err
	}
	// The private key is published only where none is (another generate of the name may race
	// with this one): the one that wins also writes the public key, so the pair matches.
	if err := atomicfile.WriteNew(priv, k.Marshal(), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: choose another name, or remove it first (a lost key cannot be recovered)", priv)
		}
		return err
	}
	if err := atomicfile.WriteFile(pub, k.Public().Marshal(), 0o644); err != nil {
		return err
	}
	out := Key{Name: o.Name, KeyID: k.ID.String(), Private: priv, Public: pub}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, out)
	}
	fmt.Fprintf(o.IO.Out, "Key %s (ID %s)\n  private: %s\n  public:  %s (give it to those who verify: ukernel trust add %s)\n", o.Name, out.KeyID, priv, pub, filepath.Base(pub))
	return nil
}

func listRun(o *Options) error {
	cfg, err := userconfig.Load()
	if err != nil {
		return err
	}
	keys, err := readKeys(cfg.KeysDir())
	if err != nil {
		return err
	}
	if o.JSON {
		return cmdutil.PrintJSON(o.IO, keys)
	}
	if len(keys) == 0 {
		fmt.Fprintf(o.IO.Out, "No signing key in %s (create one with 'ukernel key generate NAME')\n", cfg.KeysDir())
	}
	for _, k := range keys {
		fmt.Fprintf(o.IO.Out, "%-20s %s  %s\n", k.Name, k.KeyID, k.Public)
	}
	return nil
}

// readKeys lists the public keys of dir (NAME.pub), with their private half when present.
func readKeys(dir string) ([]Key, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Key{}, nil
	}
	if err != nil {
		return nil, err
	}
	keys := []Key{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pub")
		if !ok {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pk, err := sign.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		k := Key{Name: name, KeyID: pk.ID.String(), Public: p}
		if _, err := os.Stat(filepath.Join(dir, name+".key")); err == nil {
			k.Private = filepath.Join(dir, name+".key")
		}
		keys = append(keys, k)
	}
	return keys, nil
}
