package lock

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/ukernel-dev/ukernel/internal/debian"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/pypi"
)

// AddPython puts the Python requirements reqs in env, each replacing the requirement of the same
// project (case does not matter), and returns them as written.
func AddPython(env *project.Env, reqs []string) []string {
	for _, a := range reqs {
		n := strings.ToLower(project.PythonReqName(a))
		env.Python = slices.DeleteFunc(env.Python, func(r string) bool { return strings.ToLower(project.PythonReqName(r)) == n })
		env.Python = append(env.Python, a)
	}
	return slices.Clone(reqs)
}

// AddSystem maps each of names to one Debian package of env's base (see debian.Resolver.Choose,
// against the archive o's project uses) and puts it in env, replacing the entry of the same
// package: NAME, or NAME=VERSION when the name asked for a version. It returns the entries
// added and the package chosen for each.
func AddSystem(ctx context.Context, o Options, env *project.Env, names []string) ([]string, map[string]*debian.Package, error) {
	for _, a := range names {
		// Checked before the archive is read: `curl==7` (Python's syntax) is no package to look for.
		name, version, pinned := strings.Cut(a, "=")
		if entry := strings.ToLower(name); !project.ValidSystemEntry(entry) || pinned && !project.ValidSystemEntry(entry+"="+version) {
			return nil, nil, fmt.Errorf("%q is not a Debian package: expected NAME or NAME=VERSION, one '=' (curl=7.88.1-10+deb12u12)", a)
		}
	}
	base, err := project.LookupBase(env.Base)
	if err != nil {
		return nil, nil, err
	}
	arch, err := OpenArchive(ctx, o, base.Codename)
	if err != nil {
		return nil, nil, err
	}
	r := debian.NewResolver(arch.Packages)
	var added []string
	chosen := map[string]*debian.Package{}
	for _, a := range names {
		p, err := r.Choose(a)
		if err != nil {
			return nil, nil, err
		}
		entry := p.Name
		if strings.Contains(a, "=") {
			entry += "=" + p.Version
		}
		env.System = slices.DeleteFunc(env.System, func(s string) bool { n, _, _ := strings.Cut(s, "="); return n == p.Name })
		env.System = append(env.System, entry)
		added = append(added, entry)
		chosen[entry] = p
	}
	return added, chosen, nil
}

// Remove deletes the packages named by names (case does not matter; a version is not needed)
// from env: Debian packages and Python requirements, or with systemOnly Debian packages only.
// It returns the entries removed as they were written; a name env does not list is an error
// that lists what it does.
func Remove(env *project.Env, names []string, systemOnly bool) ([]string, error) {
	var removed []string
	for _, a := range names {
		gone := removeEntries(&env.System, func(s string) bool {
			name, _, _ := strings.Cut(s, "=")
			return strings.EqualFold(name, project.PythonReqName(a))
		})
		if !systemOnly {
			gone = append(gone, removeEntries(&env.Python, func(r string) bool {
				return pypi.Normalize(project.PythonReqName(r)) == pypi.Normalize(project.PythonReqName(a))
			})...)
		}
		if len(gone) == 0 {
			return nil, notListed(a, systemOnly, env)
		}
		removed = append(removed, gone...)
	}
	return removed, nil
}

// removeEntries deletes the entries of list that match and returns them.
func removeEntries(list *[]string, match func(string) bool) []string {
	var gone []string
	*list = slices.DeleteFunc(*list, func(s string) bool {
		if match(s) {
			gone = append(gone, s)
			return true
		}
		return false
	})
	return gone
}

func notListed(name string, systemOnly bool, env *project.Env) error {
	listed := slices.Clone(env.System)
	what := "a package"
	if systemOnly {
		what = "a system package"
	} else {
		listed = append(listed, env.Python...)
	}
	if len(listed) == 0 {
		return fmt.Errorf("%s is not %s in %s, which lists none", name, what, project.EnvFile)
	}
	return fmt.Errorf("%s is not %s in %s; it lists: %s", name, what, project.EnvFile, strings.Join(listed, ", "))
}

// ResolveEdited locks the edited request env (as Resolve), then saves it to env/ukernel.env: a
// request that does not lock (or whose locking is interrupted) never reaches the env file,
// where it would break every later build. Killed between the two writes, the lock is ahead of
// the env file, and the next build locks the env file's request again.
func ResolveEdited(ctx context.Context, o Options, env *project.Env) (*Lock, bool, error) {
	o.Env = env
	l, changed, err := Resolve(ctx, o)
	if err != nil {
		return nil, false, fmt.Errorf("%w\n%s left unchanged", err, project.EnvFile)
	}
	return l, changed, env.Save(o.Dir)
}

// Wheel is the wheel l pins for the Python requirement req, if any.
func (l *Lock) Wheel(req string) *pypi.Wheel {
	n := pypi.Normalize(project.PythonReqName(req))
	for i := range l.Python {
		if l.Python[i].Name == n {
			return &l.Python[i]
		}
	}
	return nil
}
