package cache

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestEveryFolderPruned: each Folder declared in layout.go is in layout, so Prune clears it; a
// folder added without its prune rule fails here.
func TestEveryFolderPruned(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "layout.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[Folder]bool{}
	for _, l := range layout {
		listed[l.folder] = true
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "Folder" {
				continue
			}
			for i, name := range v.Names {
				n++
				value, err := strconv.Unquote(v.Values[i].(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				if !listed[Folder(value)] {
					t.Errorf("folder %s is not in layout: Prune would never clear it", name.Name)
				}
			}
		}
	}
	if n != len(layout) {
		t.Errorf("%d folders declared, %d in layout", n, len(layout))
	}
}

// TestPruneClearsEveryFolder: pruning everything (age 0) leaves each folder of layout empty,
// but Records (what cannot be made again), which it keeps whole.
func TestPruneClearsEveryFolder(t *testing.T) {
	c, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layout {
		p := l.folder.In(c.Dir, "entry", "file")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.Prune(0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != len(layout)-1 {
		t.Errorf("pruned %d files, want one per folder but records (%d)", res.Files, len(layout)-1)
	}
	for _, l := range layout {
		n := usage(l.folder.In(c.Dir))
		if l.prune == pruneNever && n.Files != 1 {
			t.Errorf("%s holds %d files, want its one kept", l.folder, n.Files)
		}
		if l.prune != pruneNever && n.Files != 0 {
			t.Errorf("%s still holds %d files", l.folder, n.Files)
		}
	}
}
