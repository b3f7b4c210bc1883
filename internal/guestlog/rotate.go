package guestlog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ukernel-dev/ukernel/internal/atomicfile"
)

// Limits bound a run's log files, as Docker's json-file driver bounds a container's
// (max-size, max-file): a log that reaches MaxSize bytes moves to NAME.1 (NAME.1 to NAME.2, and
// so on), and at most MaxFiles files are kept, the current one included; the oldest goes.
type Limits struct {
	MaxSize  int64
	MaxFiles int
}

// DefaultLimits are the limits of a run that sets none: 3 files of 10 MiB a log.
var DefaultLimits = Limits{MaxSize: 10 << 20, MaxFiles: 3}

// OrDefault returns l, with DefaultLimits' values in place of zero ones.
func (l Limits) OrDefault() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultLimits.MaxSize
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	return l
}

// rotatedName is the name of the i-th older file of the log at path (0: path itself).
func rotatedName(path string, i int) string {
	if i == 0 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// Files returns the files of the log at path that exist, oldest first, path last. A gap ends
// the list: what lies beyond it is older than a rotation that did not finish.
func Files(path string) []string {
	var older []string
	for i := 1; ; i++ {
		if _, err := os.Stat(rotatedName(path, i)); err != nil {
			break
		}
		older = append(older, rotatedName(path, i))
	}
	out := make([]string, 0, len(older)+1)
	for i := len(older) - 1; i >= 0; i-- {
		out = append(out, older[i])
	}
	return append(out, path)
}

// shift makes room for a new path.1: path.(MaxFiles-1) goes, each other older file moves one
// up, and path becomes path.1 (with keepCurrent) or is left to the caller.
func shift(path string, l Limits, keepCurrent bool) error {
	last := l.MaxFiles - 1
	if last < 1 {
		return nil
	}
	if err := os.Remove(rotatedName(path, last)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := last - 1; i >= 1; i-- {
		if err := atomicfile.Move(rotatedName(path, i), rotatedName(path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if keepCurrent {
		return atomicfile.Move(path, rotatedName(path, 1))
	}
	return nil
}

// RotatingFile is an append-only file that rotates at its limits. A write never splits: a
// record goes whole into one file (a write larger than MaxSize makes a file of its own).
type RotatingFile struct {
	path   string
	limits Limits
	f      *os.File
	size   int64
}

// OpenRotating opens the log at path for appending, rotating it at l.
func OpenRotating(path string, l Limits) (*RotatingFile, error) {
	r := &RotatingFile{path: path, limits: l.OrDefault()}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

func (r *RotatingFile) Write(p []byte) (int, error) {
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.limits.MaxSize {
		if err := r.rotate(); err != nil {
			return 0, fmt.Errorf("rotate %s: %w", r.path, err)
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *RotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	var err error
	if r.limits.MaxFiles > 1 {
		err = shift(r.path, r.limits, true)
	} else {
		err = os.Remove(r.path)
	}
	// A failed rename leaves the log growing rather than lost.
	if oerr := r.open(); oerr != nil {
		return oerr
	}
	return err
}

// Close closes the current file.
func (r *RotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// TruncateCopy bounds a log that another process appends to (QEMU's console file, opened with
// O_APPEND) and that f reads: once f has read l.MaxSize bytes or more of it, what f has read
// and what is written until then goes to path.1 (older files shift) and path is truncated to
// empty; f reads on from its start. Bytes after the last read are passed to w before the
// truncation. What the writer appends between that last read and the truncation (one read
// call and one ftruncate: microseconds) is lost, as with logrotate's copytruncate; a VMM
// cannot be told to reopen its file.
func TruncateCopy(f *os.File, path string, l Limits, w io.Writer) error {
	l = l.OrDefault()
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil || pos < l.MaxSize {
		return err
	}
	var tmp *os.File
	if l.MaxFiles > 1 {
		if tmp, err = os.CreateTemp(filepath.Dir(path), ".rotate-*"); err != nil {
			return err
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tmp, io.NewSectionReader(src, 0, pos))
		src.Close()
		if err != nil {
			return err
		}
	}
	// Catch up with what came meanwhile, then truncate at once.
	buf := make([]byte, 32<<10)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if w != nil {
				w.Write(buf[:n])
			}
			if tmp != nil {
				if _, err := tmp.Write(buf[:n]); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF || n == 0 {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := os.Truncate(path, 0); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if tmp == nil {
		return nil
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := shift(path, l, false); err != nil {
		return err
	}
	if err := atomicfile.Move(tmp.Name(), rotatedName(path, 1)); err != nil {
		return err
	}
	tmp = nil
	return nil
}
