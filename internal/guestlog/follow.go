package guestlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Follow copies the file at path to w as it grows, until done closes (then it copies what is
// left and returns nil) or ctx ends (ctx's error). A file that does not exist yet is waited for.
// Growth is noticed through inotify, so a console line reaches w as soon as the VMM wrote it (a
// poll interval would add its latency to every cold start); the slow tick is only a safety net,
// and the fast one stands in where inotify is unavailable.
func Follow(ctx context.Context, path string, w io.Writer, done <-chan struct{}) error {
	return FollowFrom(ctx, path, 0, w, done)
}

// FollowFrom is Follow from byte offset of the file on. A file that is rotated (path now
// names a new file) is read to its end, then the new one from its start.
func FollowFrom(ctx context.Context, path string, offset int64, w io.Writer, done <-chan struct{}) error {
	return FollowWith(ctx, path, FollowOptions{Offset: offset}, w, done)
}

// FollowOptions tune FollowWith.
type FollowOptions struct {
	Offset int64
	// AtEOF, if set, is called each time f has been read to its end (to bound the file: see
	// guestlog.TruncateCopy); it may move f's offset.
	AtEOF func(f *os.File) error
}

// FollowWith is Follow with options.
func FollowWith(ctx context.Context, path string, o FollowOptions, w io.Writer, done <-chan struct{}) error {
	offset := o.Offset
	var f *os.File
	var changed <-chan struct{}
	stopWatch := func() {}
	defer func() {
		stopWatch()
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
			if f != nil && offset > 0 {
				if _, err := f.Seek(offset, io.SeekStart); err != nil {
					return fmt.Errorf("follow %s: %w", path, err)
				}
			}
			if f != nil {
				stopWatch()
				if c, stop, err := watchWrites(path); err == nil {
					stopWatch, changed = stop, c
					tick.Reset(500 * time.Millisecond)
				} else {
					stopWatch, changed = func() {}, nil
					tick.Reset(25 * time.Millisecond)
				}
			}
		}
		if f != nil {
			// Once path names a new file, f has all it will get: it is read to its end first.
			replaced := rotated(f, path)
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
			if o.AtEOF != nil {
				if err := o.AtEOF(f); err != nil {
					return fmt.Errorf("follow %s: %w", path, err)
				}
			}
			if replaced {
				f.Close()
				f, offset = nil, 0
				continue
			}
		}
		if finished {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
		case <-changed:
		case <-tick.C:
		}
	}
}

// rotated reports whether path names another file than f now.
func rotated(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Stat(path)
	return err == nil && !os.SameFile(fi, pi)
}

// watchWrites signals on the returned channel after writes to path (coalesced: one pending
// signal at most). stop releases the watch.
func watchWrites(path string) (<-chan struct{}, func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	// A non-blocking descriptor wrapped by os.NewFile is served by the runtime's poller: the
	// reading goroutine parks, and Close wakes it with an error.
	in := os.NewFile(uintptr(fd), "inotify:"+path)
	c := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := in.Read(buf); err != nil {
				return
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}()
	return c, func() { in.Close() }, nil
}
