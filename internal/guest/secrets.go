package guest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// SecretGroupBase is the first of the groups init gives the processes that declare secrets, one
// each: the entry's is SecretGroupBase, the i-th service's (manifest order) SecretGroupBase+1+i.
// A secret file is readable through these groups only, so two processes of one user read only
// their own secrets. No image account has such a group: Debian allocates far below it, and a
// process gets no supplementary group otherwise (see Credential).
const SecretGroupBase = 0x7FFF0000

// SecretPlan says which process reads which secret.
type SecretPlan struct {
	Readers  map[string][]uint32 // each declared secret: the groups of its declaring processes, ascending
	Entry    uint32              // the entry's group; 0 when it declares no secret
	Services map[string]uint32   // each service that declares a secret: its group
}

// PlanSecrets gives each process (entry or service) that declares a secret a group of its own
// and each secret the groups of the processes that declare it.
func PlanSecrets(m *abi.Manifest) (SecretPlan, error) {
	p := SecretPlan{Readers: map[string][]uint32{}, Services: map[string]uint32{}}
	last := uint32(SecretGroupBase + len(m.Services))
	for _, u := range m.Users {
		if uint32(u.GID) >= SecretGroupBase && uint32(u.GID) <= last {
			return SecretPlan{}, fmt.Errorf("user %s has gid %d, which init reserves for reading secrets (%d-%d)", u.Name, u.GID, SecretGroupBase, last)
		}
	}
	claim := func(gid uint32, names []string) {
		for _, n := range names {
			if !slices.Contains(p.Readers[n], gid) {
				p.Readers[n] = append(p.Readers[n], gid)
			}
		}
	}
	if len(m.Entry) > 0 && len(m.Secrets) > 0 {
		p.Entry = SecretGroupBase
		claim(p.Entry, m.Secrets)
	}
	for i, s := range m.Services {
		if len(s.Secrets) > 0 {
			p.Services[s.Name] = uint32(SecretGroupBase + 1 + i)
			claim(p.Services[s.Name], s.Secrets)
		}
	}
	return p, nil
}

// WriteSecrets puts each given secret that the workload declares into dir (a tmpfs), one file
// per secret, owned by root, readable by the group of the one process that declared it (0440),
// or through a POSIX ACL by the groups of each, when several did; dir itself is root's, 0711, so
// names cannot be listed. It returns the names given but declared by nobody and those declared
// but not given, for warnings: names only, never values.
func WriteSecrets(dir string, secrets map[string][]byte, readers map[string][]uint32) (undeclared, missing []string, err error) {
	if len(readers) == 0 && len(secrets) == 0 {
		return nil, nil, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	for _, name := range sortedNames(secrets) {
		groups, ok := readers[name]
		if !ok {
			undeclared = append(undeclared, name)
			continue
		}
		if err := writeSecret(filepath.Join(dir, name), secrets[name], groups); err != nil {
			return nil, nil, err
		}
	}
	for _, name := range sortedNames(readers) {
		if _, ok := secrets[name]; !ok {
			missing = append(missing, name)
		}
	}
	return undeclared, missing, nil
}

// writeSecret creates the file with its final owner, mode and ACL before the value goes in, so
// it is never readable by anyone else, even for a moment.
func writeSecret(path string, value []byte, groups []uint32) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("secret %s: %w", filepath.Base(path), err)
	}
	if len(groups) == 1 {
		if err = f.Chown(0, int(groups[0])); err == nil {
			err = f.Chmod(0o440)
		}
	} else {
		err = unix.Fsetxattr(int(f.Fd()), "system.posix_acl_access", readACL(groups), 0)
	}
	if err == nil {
		_, err = f.Write(value)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("secret %s for group(s) %v: %w", filepath.Base(path), groups, err)
	}
	return nil
}

// POSIX ACL xattr layout (linux/posix_acl_xattr.h): a version, then (tag, perm, id) entries.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclRead     = 4
	aclNoID     = 0xFFFFFFFF
)

// readACL is an access ACL that lets the owner (root) and each of groups read, and nobody else:
// the entries in the order the kernel requires (by tag, groups by gid).
func readACL(groups []uint32) []byte {
	gids := slices.Clone(groups)
	slices.Sort(gids)
	gids = slices.Compact(gids)
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	entry := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	entry(aclUserObj, aclRead, aclNoID)
	entry(aclGroupObj, 0, aclNoID)
	for _, gid := range gids {
		entry(aclGroup, aclRead, gid)
	}
	entry(aclMask, aclRead, aclNoID)
	entry(aclOther, 0, aclNoID)
	return b
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
