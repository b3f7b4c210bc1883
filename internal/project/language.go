package project

import (
	"path"
	"sort"

	"github.com/ukernel-dev/ukernel/internal/abi"
)

// Language is one workload language: what init scaffolds, the config accepts and build does for
// it. Its Name is both [project] language and the [build] adapter that builds it. A new language
// is one entry in languages (and its programs in internal/scaffold).
type Language struct {
	Name string
	// Base is the [env] base a new project of this language gets.
	Base string
	// Ext is its entry files' extension.
	Ext string
	// Executable entry files are written 0755 by init.
	Executable bool
	// BaseAdapter is the Adapter of the bases it builds on (a Go binary needs no runtime: any
	// plain Debian base, "shell").
	BaseAdapter string
	// Argv is how the guest starts the entry at entry (its path in the guest) of project name on
	// base.
	Argv func(entry, name string, base Base) []string
}

var languages = []Language{
	{Name: "python", Base: "python-3.11", Ext: ".py", BaseAdapter: "python",
		Argv: func(entry, _ string, b Base) []string { return []string{"/usr/bin/python" + b.PythonVersion, entry} }},
	{Name: "shell", Base: "debian-12", Ext: ".sh", Executable: true, BaseAdapter: "shell",
		Argv: func(entry, _ string, _ Base) []string { return []string{"/bin/sh", entry} }},
	{Name: "go", Base: "debian-12", Ext: ".go", BaseAdapter: "shell",
		Argv: func(_, name string, _ Base) []string { return []string{path.Join(abi.AppDir, name)} }},
	{Name: "node", Base: "node-18", Ext: ".js", BaseAdapter: "node",
		Argv: func(entry, _ string, _ Base) []string { return []string{"/usr/bin/node", entry} }},
}

// LookupLanguage returns the language (or adapter) name.
func LookupLanguage(name string) (Language, bool) {
	for _, l := range languages {
		if l.Name == name {
			return l, true
		}
	}
	return Language{}, false
}

// Languages lists the supported project languages, sorted.
func Languages() []string {
	var l []string
	for _, lang := range languages {
		l = append(l, lang.Name)
	}
	sort.Strings(l)
	return l
}
