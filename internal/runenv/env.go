package runenv

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/ukernel-dev/ukernel/internal/project"
)

// ParseEnv turns -e K=V values and env files into the run-time environment. A bare -e K takes
// K's value from ukernel's own environment, as container runtimes do. Env files hold K=V lines;
// blank lines and lines starting with # are skipped. Later values win.
func ParseEnv(flags []string, files []string) (map[string]string, error) {
	env := map[string]string{}
	set := func(src, kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			v, ok = os.LookupEnv(k)
			if !ok {
				return fmt.Errorf("%s: %q has no value and %s is not set here; use K=V", src, kv, k)
			}
		}
		if err := project.ValidateEnvName(k); err != nil {
			return fmt.Errorf("%s: %w", src, err)
		}
		// A process environment cannot hold a NUL: the guest could not start the workload.
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("%s: the value of %s holds a NUL byte", src, k)
		}
		env[k] = v
		return nil
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		// Split rather than a bufio.Scanner: a line is as long as its value, with no limit.
		for n, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			// Never echo the line: it may be a secret.
			if err := set(fmt.Sprintf("%s:%d", file, n+1), line); err != nil {
				return nil, fmt.Errorf("%s:%d: expected KEY=VALUE (KEY of letters, digits and '_'; no NUL in VALUE), or the name of a variable set here", file, n+1)
			}
		}
	}
	for _, kv := range flags {
		if err := set("-e", kv); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// EnvFile writes env as an env file that ParseEnv reads back as env (deploy keeps a revision's
// environment in one). A value with a line break, or with white space at its end (ParseEnv
// trims each line), cannot be written as one: an error names its variable, never the value.
func EnvFile(env map[string]string) ([]byte, error) {
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(env)) {
		v := env[k]
		if err := project.ValidateEnvName(k); err != nil {
			return nil, err
		}
		if strings.ContainsAny(v, "\n\x00") || strings.TrimRightFunc(v, unicode.IsSpace) != v {
			return nil, fmt.Errorf("the value of %s holds a line break or a NUL, or ends in white space: an env file cannot carry it (deploy keeps the environment in one)", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.Bytes(), nil
}
