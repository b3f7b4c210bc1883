package lock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/project"
)

// reresolveHint is what to do with a lock the archive does not vouch for.
const reresolveHint = "run ukernel env lock to re-resolve it from the signed archive (and review the change to " + project.LockFile + ")"

// Prove checks that the Debian archive's signature vouches for every Debian package l pins (the
// kernel included): see debian.Prove. A lock's digest only shows that it is whole, not that its
// pins are Debian's: anyone who edits the file can re-seal it.
//
// A proven lock is recorded in the cache under its digest and the keyring's, so a no-op build
// does not read the indices again; the record holds the lock digest it was made for.
func Prove(ctx context.Context, l *Lock, o Options) error {
	if err := o.init(); err != nil {
		return err
	}
	if o.Keyring == "" {
		o.Keyring = debian.DefaultKeyring
	}
	keyring, err := os.ReadFile(o.Keyring)
	if err != nil {
		return fmt.Errorf("archive keyring: %w (install debian-archive-keyring)", err)
	}
	ks := sha256.Sum256(keyring)
	mk := sha256.Sum256([]byte("ukernel lock proof v1\n" + l.Digest + "\n" + hex.EncodeToString(ks[:]) + "\n"))
	memo := "proven/" + hex.EncodeToString(mk[:])
	if got, err := o.Cache.ReadState(memo); err == nil && strings.TrimSpace(string(got)) == l.Digest {
		return nil
	}
	base, err := project.LookupBase(l.Base)
	if err != nil {
		return fmt.Errorf("%s: base: %w", project.LockFile, err)
	}
	srcs, err := sources(o.Dir, base.Codename)
	if err != nil {
		return err
	}
	var indices []debian.LockedIndex
	for _, a := range l.Archives {
		indices = append(indices, debian.LockedIndex{Codename: a.Codename, Path: a.Index, SHA256: a.IndexSHA256})
	}
	pins := make([]debian.Pin, 0, len(l.Packages)+1)
	for _, p := range l.Packages {
		pins = append(pins, pin(p))
	}
	for _, p := range []*Package{l.Kernel, l.Tools} {
		if p != nil {
			pins = append(pins, pin(*p))
		}
	}
	err = debian.Prove(ctx, debian.OpenOptions{Sources: srcs, Cache: o.Cache, Fetcher: o.fetcher(), Keyring: o.Keyring, Offline: o.Offline, Logger: o.Logger}, indices, pins)
	var unproven *debian.UnprovenError
	if errors.As(err, &unproven) {
		return fmt.Errorf("%s: %w; %s", project.LockFile, err, reresolveHint)
	}
	if err != nil {
		return fmt.Errorf("%s: proving the locked packages against the signed archive: %w", project.LockFile, err)
	}
	if err := o.Cache.WriteState(memo, []byte(l.Digest+"\n")); err != nil {
		o.Logger.Warn("could not record the proven lock", "err", err)
	}
	return nil
}

func pin(p Package) debian.Pin {
	return debian.Pin{Name: p.Name, Version: p.Version, Architecture: p.Architecture, Filename: p.Filename, Size: p.Size, SHA256: p.SHA256, Suite: p.Suite}
}
