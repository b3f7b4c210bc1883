package runenv

import (
	"fmt"
	"os"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// MaxSecretSize bounds one secret; all of them travel on the config drive.
const MaxSecretSize = 1 << 20

// ParseSecrets turns --secret values into the run-time secrets: NAME=@FILE reads FILE, a bare
// NAME takes the value of the environment variable NAME here. A literal NAME=VALUE is refused:
// it would sit in the shell's history and the process list. Errors name the secret, never
// its value.
func ParseSecrets(flags []string) (map[string][]byte, error) {
	secrets := map[string][]byte{}
	for _, f := range flags {
		name, src, hasSrc := strings.Cut(f, "=")
		if err := project.ValidateSecretName(name); err != nil {
			return nil, fmt.Errorf("--secret: %w", err)
		}
		if _, dup := secrets[name]; dup {
			return nil, fmt.Errorf("--secret %s is given twice", name)
		}
		var val []byte
		switch {
		case !hasSrc:
			v, ok := os.LookupEnv(name)
			if !ok {
				return nil, fmt.Errorf("--secret %s: the environment variable %s is not set here; set it or use --secret %s=@FILE", name, name, name)
			}
			val = []byte(v)
		case strings.HasPrefix(src, "@"):
			file := src[1:]
			fi, err := os.Stat(file)
			if err != nil {
				return nil, fmt.Errorf("--secret %s: %w", name, err)
			}
			if !fi.Mode().IsRegular() || fi.Size() > MaxSecretSize {
				return nil, fmt.Errorf("--secret %s: %s must be a regular file of at most %d bytes", name, file, MaxSecretSize)
			}
			if val, err = os.ReadFile(file); err != nil {
				return nil, fmt.Errorf("--secret %s: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("--secret %s=...: give the value as NAME=@FILE or from the environment as NAME, not on the command line", name)
		}
		if len(val) > MaxSecretSize {
			return nil, fmt.Errorf("--secret %s: larger than %d bytes", name, MaxSecretSize)
		}
		secrets[name] = val
	}
	return secrets, nil
}
