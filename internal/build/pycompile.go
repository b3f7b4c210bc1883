package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// pycompileScript runs inside the guest's own Python (see byteCompile). It byte-compiles the
// modules the interpreter imports at startup and those the entry imports (found by
// modulefinder, which reads bytecode and runs nothing), for the guest's Python version, with
// hash-based pycs that do not depend on file times, recording guest paths, not host ones.
const pycompileScript = `
import sys
startup = list(sys.modules.values())
import importlib.machinery, importlib.util, modulefinder, os, py_compile
root, entry = sys.argv[1], sys.argv[2]
files = set()
def inside(f):
    # Absolute links in the tree point at the host's files: never compile those.
    return f.endswith(".py") and os.path.realpath(f).startswith(root + "/")
for m in startup:
    spec = getattr(m, "__spec__", None)
    if spec is None or spec.loader is importlib.machinery.FrozenImporter:
        continue
    f = getattr(m, "__file__", None) or ""
    if inside(f):
        files.add(f)
if entry:
    finder = modulefinder.ModuleFinder(path=sys.path)
    try:
        finder.run_script(entry)
    except Exception as e:
        print("ukernel: modulefinder:", e, file=sys.stderr)
    for m in finder.modules.values():
        f = m.__file__ or ""
        if inside(f) and f != entry:  # a script runs from source, never from its pyc
            files.add(f)
for f in sorted(files):
    py_compile.compile(f, cfile=importlib.util.cache_from_source(f), dfile=f[len(root):],
                       doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
print(len(files))
`

// byteCompile does what Debian's py3compile does in a postinst, for the modules a boot needs:
// without it the guest compiles them from source on every boot (the root is read-only), about
// 130 ms of a python worker's start under TCG for the interpreter's own startup alone.
// Compiling the whole standard library would add 6 MB to the image for modules most workloads
// never import. It runs the guest's interpreter from the staged tree through the tree's own
// dynamic loader, so the bytecode is the guest Python's, not the host's.
func byteCompile(ctx context.Context, root, pythonVersion, entry string) (int, error) {
	py := filepath.Join(root, "usr/bin/python"+pythonVersion)
	loader := filepath.Join(root, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	for _, p := range []string{py, loader} {
		if _, err := os.Stat(p); err != nil {
			// A runtime without an interpreter or libc cannot run Python in the guest either
			// (only synthetic trees in tests lack them): there is nothing to compile for.
			return 0, nil
		}
	}
	libs := []string{filepath.Join(root, "usr/lib/x86_64-linux-gnu"), filepath.Join(root, "usr/lib")}
	if entry != "" {
		entry = filepath.Join(root, entry)
	}
	// PYTHONHOME makes the interpreter find its standard library and site directories in the
	// tree; PYTHONPATH stands in for the entry's directory, sys.path[0] in the guest.
	cmd := exec.CommandContext(ctx, loader, "--library-path", strings.Join(libs, ":"), py,
		"-c", pycompileScript, root, entry)
	cmd.Env = []string{"PYTHONHOME=" + filepath.Join(root, "usr"), "PYTHONPATH=" + filepath.Join(root, "app"),
		"PYTHONHASHSEED=0", "PYTHONDONTWRITEBYTECODE=1", "LC_ALL=C.UTF-8", "PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("byte-compiling Python for the guest runs the guest's interpreter on this host, which needs an x86-64 Linux host: %v\n%s", err, stderr.String())
	}
	var n int
	fmt.Sscan(string(out), &n)
	return n, nil
}
