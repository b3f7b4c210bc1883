package cmdutil

import "testing"

// Paths on the command line are the project's (-C), not the working directory's.
func TestProjectPath(t *testing.T) {
	for p, want := range map[string]string{
		"":                "",
		"dist/a.img":      "/work/p/dist/a.img",
		"../b.img":        "/work/b.img",
		"/abs/c.img":      "/abs/c.img",
		"./dist/../d.img": "/work/p/d.img",
	} {
		if got := ProjectPath("/work/p", p); got != want {
			t.Errorf("ProjectPath(/work/p, %q) = %q, want %q", p, got, want)
		}
	}
}
