package pipeline

import (
	"path/filepath"

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
