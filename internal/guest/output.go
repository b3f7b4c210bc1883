package guest

import (
	"bufio"
	"io"
	"os"
	"sync"
)

// maxLine bounds a prefixed console line; longer output is cut into lines of this size.
const maxLine = 4096

// Console serialises whole lines onto the console, so the lines of several services interleave
// but never mix within a line.
type Console struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsole writes lines to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

// Prefixed returns a pipe whose writes appear on the console line by line as "[name] line".
// The pipe's write end is handed to the service's processes (every restart reuses it); the
// copy ends when all write ends are closed.
func (c *Console) Prefixed(name string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go c.copyLines(r, "["+name+"] ")
	return w, nil
}

func (c *Console) copyLines(r io.ReadCloser, prefix string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out := make([]byte, 0, len(prefix)+len(line)+1)
			out = append(append(out, prefix...), line...)
			if out[len(out)-1] != '\n' {
				out = append(out, '\n')
			}
			c.mu.Lock()
			_, _ = c.w.Write(out)
			c.mu.Unlock()
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
