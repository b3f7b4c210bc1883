package runstate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Follow copies the file at path to w as it grows, until done closes (then it copies what is
// left and returns nil) or ctx ends (ctx's error). A file that does not exist yet is waited for.
func Follow(ctx context.Context, path string, w io.Writer, done <-chan struct{}) error {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		finished := false
		select {
		case <-done:
			finished = true
		default:
		}
		if f == nil {
			var err error
			if f, err = os.Open(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("follow %s: %w", path, err)
			}
		}
		if f != nil {
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if _, werr := w.Write(buf[:n]); werr != nil {
						return werr
					}
				}
				if err == io.EOF || n == 0 {
					break
				}
				if err != nil {
					return fmt.Errorf("follow %s: %w", path, err)
				}
			}
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
		case <-tick.C:
		}
	}
}
