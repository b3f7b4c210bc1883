package guestlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxLine bounds a log line a reader holds: the writer's lines are far shorter (maxPartial
// bytes of text, escaped); a longer one is not a record and is skipped.
const maxLine = 1 << 20

// Scan hands fn the records of the output log at path (its rotated files first) that f
// selects, in order, holding one line at a time. It returns the offset in path after the last
// whole line (where a follow goes on). A line that is not a record (a write cut short by a
// crash) is skipped.
func Scan(path string, f Filter, fn func(Record) error) (int64, error) {
	var off int64
	for _, name := range Files(path) {
		var err error
		off, err = scanFile(name, name == path, f, fn)
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

func scanFile(name string, current bool, f Filter, fn func(Record) error) (int64, error) {
	fh, err := os.Open(name)
	if err != nil {
		if !current && errors.Is(err, os.ErrNotExist) {
			return 0, nil // rotated away meanwhile
		}
		return 0, fmt.Errorf("output log: %w", err)
	}
	defer fh.Close()
	var off int64
	err = EachLine(fh, func(line []byte) error {
		off += int64(len(line))
		var r Record
		if json.Unmarshal(line, &r) == nil && f.Match(r) {
			return fn(r)
		}
		return nil
	})
	if err != nil {
		return off, fmt.Errorf("output log %s: %w", name, err)
	}
	return off, nil
}

// EachLine calls fn with each whole line of r (its newline included); a line longer than
// maxLine is skipped, a last line without a newline is left out.
func EachLine(r io.Reader, fn func([]byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	skipping := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if !skipping && len(long)+len(chunk) <= maxLine {
				long = append(long, chunk...)
			} else {
				skipping, long = true, long[:0]
			}
			continue
		case err == nil:
			line := chunk
			if len(long) > 0 {
				line = append(long, chunk...)
			}
			if !skipping && len(line) <= maxLine {
				if ferr := fn(line); ferr != nil {
					return ferr
				}
			}
			skipping, long = false, long[:0]
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}

// Read returns the records of the output log at path that f selects, in order, and the
// offset after the last whole line. It holds them all: for a bounded answer use Scan or
// TailRecords.
func Read(path string, f Filter) ([]Record, int64, error) {
	var out []Record
	off, err := Scan(path, f, func(r Record) error {
		out = append(out, r)
		return nil
	})
	return out, off, err
}

// TailRecords returns the last n records of the output log at path that f selects (n < 0:
// all, through Read), reading the files backwards from their ends: its memory is the n
// records, whatever the log's size. The offset is as Scan's.
func TailRecords(path string, f Filter, n int) ([]Record, int64, error) {
	if n < 0 {
		return Read(path, f)
	}
	files := Files(path)
	var rev []Record // newest first
	var off int64
	for i := len(files) - 1; i >= 0 && len(rev) < n; i-- {
		fh, err := os.Open(files[i])
		if err != nil {
			if i < len(files)-1 && errors.Is(err, os.ErrNotExist) {
				break
			}
			return nil, 0, fmt.Errorf("output log: %w", err)
		}
		end, err := eachLineBackward(fh, func(line []byte) bool {
			var r Record
			if json.Unmarshal(line, &r) == nil && f.Match(r) {
				rev = append(rev, r)
			}
			return len(rev) < n
		})
		fh.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("output log %s: %w", files[i], err)
		}
		if i == len(files)-1 {
			off = end
		}
	}
	if n == 0 {
		// Nothing to print, but a follow still starts at the end.
		var err error
		if off, err = wholeLinesEnd(path); err != nil {
			return nil, 0, err
		}
	}
	out := make([]Record, len(rev))
	for i, r := range rev {
		out[len(rev)-1-i] = r
	}
	return out, off, nil
}

// wholeLinesEnd is the offset after the last newline of path's first size bytes.
func wholeLinesEnd(path string) (int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	return eachLineBackward(fh, func([]byte) bool { return false })
}

// eachLineBackward calls fn with f's whole lines, the last first, until fn returns false. It
// returns the offset after f's last newline (a last line without one is left out). It holds a
// chunk and one line at a time.
func eachLineBackward(f *os.File, fn func(line []byte) bool) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	const chunk = 64 << 10
	pos := fi.Size()
	var carry []byte // the start of pos's line, read so far (it continues to the right)
	end := int64(-1)
	buf := make([]byte, chunk)
	skipping := false
	for pos > 0 {
		n := int64(chunk)
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil && err != io.EOF {
			return 0, err
		}
		data := buf[:n]
		for {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				if !skipping && len(carry)+len(data) <= maxLine {
					carry = append(append(make([]byte, 0, len(data)+len(carry)), data...), carry...)
				} else {
					skipping, carry = true, nil
				}
				break
			}
			// data[i+1:]+carry is a line whose newline is where carry ended.
			if end < 0 {
				end = pos + int64(i) + 1 // the file's last newline: what follows is cut
			} else if !skipping {
				line := append(append(make([]byte, 0, len(data)-i-1+len(carry)), data[i+1:]...), carry...)
				if len(line) <= maxLine && !fn(line) {
					return end, nil
				}
			}
			skipping, carry = false, nil
			data = data[:i]
		}
	}
	if end < 0 {
		return 0, nil
	}
	if !skipping && len(carry) > 0 {
		fn(carry)
	}
	return end, nil
}

// TailBytes returns up to the last max bytes of the log at path, across its rotated files
// (the older files' ends first), starting at a line's start when it had to cut.
func TailBytes(path string, max int64) []byte {
	files := Files(path)
	var parts [][]byte
	left := max
	for i := len(files) - 1; i >= 0 && left > 0; i-- {
		fh, err := os.Open(files[i])
		if err != nil {
			break
		}
		fi, err := fh.Stat()
		if err != nil {
			fh.Close()
			break
		}
		n := fi.Size()
		if n > left {
			n = left
		}
		b := make([]byte, n)
		_, err = fh.ReadAt(b, fi.Size()-n)
		fh.Close()
		if err != nil && err != io.EOF {
			break
		}
		parts = append(parts, b)
		left -= n
	}
	var out []byte
	for i := len(parts) - 1; i >= 0; i-- {
		out = append(out, parts[i]...)
	}
	if int64(len(out)) == max {
		if i := bytes.IndexByte(out, '\n'); i >= 0 {
			out = out[i+1:]
		}
	}
	return out
}
