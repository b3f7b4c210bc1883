package runenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
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
		if k == "" || strings.ContainsAny(k, " \t\x00") {
			return fmt.Errorf("%s: %q is not a valid variable name", src, k)
		}
		env[k] = v
		return nil
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			// Never echo the line: it may be a secret.
			if err := set(fmt.Sprintf("%s:%d", file, n), line); err != nil {
				return nil, fmt.Errorf("%s:%d: expected KEY=VALUE, or the name of a variable set here", file, n)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", file, err)
		}
	}
	for _, kv := range flags {
		if err := set("-e", kv); err != nil {
			return nil, err
		}
	}
	return env, nil
}
