package guest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// SecretReaders maps each secret the workload declares to the users of the processes that
// declare it (the entry's user for the entry's, each service's for its own), each user once.
func SecretReaders(m *abi.Manifest) (map[string][]abi.User, error) {
	readers := map[string][]abi.User{}
	claim := func(by, user string, names []string) error {
		u, err := LookupUser(m.Users, user)
		if err != nil {
			return fmt.Errorf("%s: %w", by, err)
		}
		for _, n := range names {
			if !slices.ContainsFunc(readers[n], func(r abi.User) bool { return r.UID == u.UID }) {
				readers[n] = append(readers[n], u)
			}
		}
		return nil
	}
	if len(m.Entry) > 0 {
		if err := claim("the entry", m.User, m.Secrets); err != nil {
			return nil, err
		}
	}
	for _, s := range m.Services {
		if err := claim("service "+s.Name, s.User, s.Secrets); err != nil {
			return nil, err
		}
	}
	return readers, nil
}

// WriteSecrets puts each given secret that the workload declares into dir (a tmpfs), one file
// per secret, mode 0400, owned by the user that declared it, or by root with a POSIX ACL that
// lets each declaring user read it when processes of several users declare it; dir itself is
// root's, 0711, so names cannot be listed. It returns the names given but declared by nobody and those declared
// but not given, for warnings: names only, never values.
func WriteSecrets(dir string, secrets map[string][]byte, readers map[string][]abi.User) (undeclared, missing []string, err error) {
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
		users, ok := readers[name]
		if !ok {
			undeclared = append(undeclared, name)
			continue
		}
		if err := writeSecret(filepath.Join(dir, name), secrets[name], users); err != nil {
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
func writeSecret(path string, value []byte, users []abi.User) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("secret %s: %w", filepath.Base(path), err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Name)
	}
	if len(users) == 1 {
		err = f.Chown(users[0].UID, users[0].GID)
	} else {
		err = unix.Fsetxattr(int(f.Fd()), "system.posix_acl_access", readACL(users), 0)
	}
	if err == nil {
		_, err = f.Write(value)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("secret %s for user(s) %s: %w", filepath.Base(path), strings.Join(names, ", "), err)
	}
	return nil
}

// POSIX ACL xattr layout (linux/posix_acl_xattr.h): a version, then (tag, perm, id) entries.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclMask     = 0x10
	aclOther    = 0x20
	aclRead     = 4
	aclNoID     = 0xFFFFFFFF
)

// readACL is an access ACL that lets the owner (root) and each of users read, and nobody else:
// the entries in the order the kernel requires (by tag, users by uid).
func readACL(users []abi.User) []byte {
	uids := make([]uint32, 0, len(users))
	for _, u := range users {
		uids = append(uids, uint32(u.UID))
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	entry := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	entry(aclUserObj, aclRead, aclNoID)
	for _, uid := range uids {
		entry(aclUser, aclRead, uid)
	}
	entry(aclGroupObj, 0, aclNoID)
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
