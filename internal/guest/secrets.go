package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// SecretOwners maps each secret the workload declares to the user of the process that declares
// it (the entry's user for the entry's, each service's for its own).
func SecretOwners(m *abi.Manifest) (map[string]abi.User, error) {
	owners := map[string]abi.User{}
	claim := func(by, user string, names []string) error {
		u, err := LookupUser(m.Users, user)
		if err != nil {
			return fmt.Errorf("%s: %w", by, err)
		}
		for _, n := range names {
			if prev, ok := owners[n]; ok && prev.UID != u.UID {
				return fmt.Errorf("secret %q is declared by processes of users %s and %s; a secret file has one owner", n, prev.Name, u.Name)
			}
			owners[n] = u
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
	return owners, nil
}

// WriteSecrets puts each given secret that the workload declares into dir (a tmpfs), one file
// per secret, mode 0400, owned by the user that declared it; dir itself is root's, 0711, so
// names cannot be listed. It returns the names given but declared by nobody and those declared
// but not given, for warnings: names only, never values.
func WriteSecrets(dir string, secrets map[string][]byte, owners map[string]abi.User) (undeclared, missing []string, err error) {
	if len(owners) == 0 && len(secrets) == 0 {
		return nil, nil, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, nil, fmt.Errorf("secrets: %w", err)
	}
	for _, name := range sortedNames(secrets) {
		u, ok := owners[name]
		if !ok {
			undeclared = append(undeclared, name)
			continue
		}
		if err := writeSecret(filepath.Join(dir, name), secrets[name], u); err != nil {
			return nil, nil, err
		}
	}
	for _, name := range sortedNames(owners) {
		if _, ok := secrets[name]; !ok {
			missing = append(missing, name)
		}
	}
	return undeclared, missing, nil
}

// writeSecret creates the file with its final owner and mode before the value goes in, so it is
// never readable by anyone else, even for a moment.
func writeSecret(path string, value []byte, u abi.User) error {
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("secret %s: %w", filepath.Base(path), err)
	}
	err = f.Chown(u.UID, u.GID)
	if err == nil {
		_, err = f.Write(value)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("secret %s for user %s: %w", filepath.Base(path), u.Name, err)
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
