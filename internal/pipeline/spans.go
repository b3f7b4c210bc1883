package pipeline

import (
	"path/filepath"
	"slices"

	"github.com/ukernel-dev/ukernel/internal/lock"
	"github.com/ukernel-dev/ukernel/internal/project"
	"github.com/ukernel-dev/ukernel/internal/trace"
)

// recordSpans writes the lock/build/pack spans to build/trace.json, where `ukernel trace` finds
// them for the run that follows. A failure only costs the trace those spans.
func recordSpans(p *Project, o Options, spans []trace.Span) {
	path := filepath.Join(p.Dir, project.BuildDir, trace.BuildSpansFile)
	if err := trace.WriteSpans(path, spans); err != nil {
		o.logger().Debug("record spans", "err", err)
	}
}

// closure is the lock's package list as the manifest records it.
func closure(l *lock.Lock) []string {
	var c []string
	for _, p := range l.Packages {
		c = append(c, p.Name+"="+p.Version)
	}
	for _, w := range l.Python {
		c = append(c, "pypi:"+w.Name+"="+w.Version)
	}
	slices.Sort(c)
	return c
}
