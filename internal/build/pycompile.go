package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// The three steps of byteCompile, each run by the guest's own interpreter.
const (
	// importsScript prints the standard-library modules that the files named on stdin (the
	// entry, the installed wheels' modules) import at their top level, from the syntax tree:
	// nothing of them runs. A file that does not parse (a wheel may ship one for another Python)
	// imports nothing.
	importsScript = `
import ast, sys
names = set()
for f in sys.stdin.read().splitlines():
    try:
        tree = ast.parse(open(f, "rb").read())
    except (SyntaxError, ValueError, UnicodeError, RecursionError):
        continue
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
for n in sorted(names):
    if n.split(".")[0] in sys.stdlib_module_names and n not in ("antigravity", "this"):
        print(n)
`
	// loadedScript is prefixed with the entry's standard-library imports; it prints the source
	// files of every module then loaded that is not frozen into the interpreter. With socket it
	// loads the idna codec, which socket.getaddrinfo uses on every str host (any server that
	// binds one: waitress compiled encodings.idna and stringprep at every boot).
	loadedScript = `
import sys
if "socket" in sys.modules:
    import encodings.idna
for m in list(sys.modules.values()):
    spec = getattr(m, "__spec__", None)
    f = getattr(m, "__file__", None) or ""
    if spec is not None and spec.origin != "frozen" and f.endswith(".py"):
        sys.stdout.write(f + "\n")
`
	// compileScript byte-compiles the files named on stdin into hash-based pycs that do not
	// depend on file times and record guest paths. root (argv[1]) is resolved, so it compares
	// with resolved paths; f itself must start with it for its guest path. A file that resolves
	// out of the tree is an absolute link meant for the guest's root (Debian's sitecustomize.py
	// -> /etc/python3.X/sitecustomize.py): it is followed inside the tree, and its pyc, beside
	// the link where the import system looks, checks the source's hash, since the target may lie
	// on the guest's writable /etc. A link with no target in the tree is skipped.
	compileScript = `
import importlib.util, os, py_compile, sys
root = sys.argv[1]
wheels = sys.argv[2] + "/"
Mode = py_compile.PycInvalidationMode

def in_tree(f):
    cur = f
    for _ in range(8):
        if os.path.realpath(cur).startswith(root + "/"):
            return cur
        if not os.path.islink(cur):
            return None
        t = os.readlink(cur)
        cur = root + t if t.startswith("/") else os.path.join(os.path.dirname(cur), t)
    return None

n = 0
for f in sorted(set(sys.stdin.read().splitlines())):
    if not f.startswith(root + "/"):
        continue
    src = in_tree(f)
    if src is None or not os.path.isfile(src):
        continue
    mode = Mode.UNCHECKED_HASH if src == f else Mode.CHECKED_HASH
    try:
        py_compile.compile(src, cfile=importlib.util.cache_from_source(f), dfile=f[len(root):],
                           doraise=True, invalidation_mode=mode)
    except py_compile.PyCompileError:
        # As pip: a wheel's file that does not compile stays source only.
        if not f.startswith(wheels):
            raise
        continue
    n += 1
print(n)
`
)

// byteCompile does what Debian's py3compile does in a postinst, for the modules a boot needs:
// those the interpreter imports at startup and the standard-library modules the entry's
// top-level imports load; and what pip does at install, for every module of the installed
// wheels, with the standard-library modules their top-level imports load. Without the wheels'
// bytecode a Flask app compiled Flask, Werkzeug, Jinja and Click from source at every boot. Without it the guest compiles them from source at every boot (the root
// is read-only): about 130 ms of a python worker's start under TCG for the interpreter's own
// startup alone. Compiling the whole standard library would add 6 MB to the image, and
// following every import the entry could reach (modulefinder) compiled 244 modules for a
// four-import worker; importing the entry's own standard-library imports gives the set a boot
// really loads, without running any of the project's code. It runs the guest's interpreter
// from the staged tree through the tree's own dynamic loader, so the bytecode is the guest
// Python's, not the host's.
func byteCompile(ctx context.Context, root, pythonVersion, entry string) (int, error) {
	// The compile step keeps the files whose resolved path is in the tree: the tree's own path
	// must be resolved too, or a project reached through a symlink compiles nothing.
	root, err := filepath.Abs(root)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return 0, fmt.Errorf("byte-compiling Python: resolving the staged root: %w", err)
	}
	py := filepath.Join(root, "usr/bin/python"+pythonVersion)
	loader := filepath.Join(root, "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	for _, p := range []string{py, loader} {
		if _, err := os.Stat(p); err != nil {
			// A runtime without an interpreter or libc cannot run Python in the guest either
			// (only synthetic trees in tests lack them): there is nothing to compile for.
			return 0, nil
		}
	}
	run := func(stdin string, args ...string) (string, error) {
		libs := filepath.Join(root, "usr/lib/x86_64-linux-gnu") + ":" + filepath.Join(root, "usr/lib")
		cmd := exec.CommandContext(ctx, loader, append([]string{"--library-path", libs, py}, args...)...)
		// PYTHONHOME makes the interpreter find its standard library and site directories in
		// the tree; nothing of the host's Python environment leaks in.
		cmd.Env = []string{"PYTHONHOME=" + filepath.Join(root, "usr"), "PYTHONHASHSEED=0",
			"PYTHONDONTWRITEBYTECODE=1", "LC_ALL=C.UTF-8", "PATH=/usr/bin:/bin"}
		cmd.Stdin = strings.NewReader(stdin)
		workdir.DieWithParent(cmd)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("byte-compiling Python for the guest runs the guest's interpreter on this host, which needs an x86-64 Linux host: %v\n%s", err, stderr.String())
		}
		return string(out), nil
	}
	wheels := filepath.Join(root, WheelSite(pythonVersion))
	wheelFiles, err := sourceFiles(wheels)
	if err != nil {
		return 0, fmt.Errorf("byte-compiling Python: %w", err)
	}
	scan := wheelFiles
	if entry != "" {
		scan = append([]string{filepath.Join(root, entry)}, scan...)
	}
	var imports []string
	if len(scan) > 0 {
		out, err := run(strings.Join(scan, "\n"), "-c", importsScript)
		if err != nil {
			return 0, err
		}
		for _, name := range strings.Fields(out) {
			imports = append(imports, "import "+name)
		}
	}
	// An import that fails (a module the runtime lacks) only means nothing to compile for it.
	var prefix strings.Builder
	for _, imp := range imports {
		fmt.Fprintf(&prefix, "try:\n    %s\nexcept Exception:\n    pass\n", imp)
	}
	files, err := run("", "-c", prefix.String()+loadedScript)
	if err != nil {
		return 0, err
	}
	if len(wheelFiles) > 0 {
		files += strings.Join(wheelFiles, "\n") + "\n"
	}
	out, err := run(files, "-c", compileScript, root, wheels)
	if err != nil {
		return 0, err
	}
	var n int
	fmt.Sscan(out, &n)
	return n, nil
}

// WheelSite is where the locked wheels are installed in the guest's tree, relative to its root.
func WheelSite(pythonVersion string) string {
	return "usr/local/lib/python" + pythonVersion + "/dist-packages"
}

// sourceFiles lists the regular .py files under dir (none when it does not exist), sorted.
func sourceFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".py") {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}
