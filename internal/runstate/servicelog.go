package runstate

import (
	"bytes"
	"io"
)

// ServiceFilter is a writer that passes on only the console lines of one service, without their
// "[name] " prefix (the guest's init writes each service's output that way; the entry's output
// and the kernel's have none). Partial lines wait for their newline; Flush writes the last.
type ServiceFilter struct {
	w      io.Writer
	prefix []byte
	buf    []byte
}

// NewServiceFilter filters for service name onto w.
func NewServiceFilter(w io.Writer, name string) *ServiceFilter {
	return &ServiceFilter{w: w, prefix: []byte("[" + name + "] ")}
}

func (f *ServiceFilter) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			break
		}
		if err := f.line(f.buf[:i+1]); err != nil {
			return len(p), err
		}
		f.buf = f.buf[i+1:]
	}
	return len(p), nil
}

// Flush writes a last line that has no newline.
func (f *ServiceFilter) Flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	err := f.line(f.buf)
	f.buf = nil
	return err
}

func (f *ServiceFilter) line(l []byte) error {
	// The serial console may end lines with CR LF and start them with a stray CR.
	l = bytes.TrimLeft(l, "\r")
	rest, ok := bytes.CutPrefix(l, f.prefix)
	if !ok {
		return nil
	}
	_, err := f.w.Write(rest)
	return err
}
