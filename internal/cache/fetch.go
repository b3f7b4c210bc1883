package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/workdir"
)

// ErrNotOnServer is a 404/410 from the server: the file is gone (e.g. a superseded version).
var ErrNotOnServer = errors.New("not on the server")

// Fetcher downloads over HTTP(S) (or reads file:// URLs) with retries and progress reporting.
type Fetcher struct {
	Client   *http.Client
	Attempts int           // default 4
	Backoff  time.Duration // first retry delay, doubled each time; default 500ms
	Progress io.Writer     // nil: silent; a *progress.Writer is drawn on as it is
	TTY      bool          // Progress is a terminal (when it is not a *progress.Writer)
	Logger   *slog.Logger
	// Stall bounds how long one attempt may go without a byte from the server (connecting,
	// waiting for the answer, or reading the body); the attempt then fails and is retried.
	// Default DefaultStall. The caller's context has no deadline of its own: a download may be
	// large, only a server that stops sending is given up on.
	Stall time.Duration
}

// DefaultStall is Fetcher.Stall's default.
const DefaultStall = 60 * time.Second

// errStalled ends an attempt during which the server sent nothing for the stall bound.
var errStalled = errors.New("download stalled: the server sent nothing")

func (f *Fetcher) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Get returns the whole body of a small file (an InRelease).
func (f *Fetcher) Get(ctx context.Context, u string) ([]byte, error) {
	var data []byte
	err := f.retry(ctx, u, func() error {
		rc, _, err := f.open(ctx, u)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err = io.ReadAll(rc)
		return err
	})
	return data, err
}

// Fetch downloads u into the cache unless a verified blob with digest sum is already there, and
// returns the blob's path. name labels the progress output; size (0 if unknown) sizes the bar.
func (f *Fetcher) Fetch(ctx context.Context, c *Cache, u, sum, name string, size int64) (string, error) {
	if p, err := c.Path(sum); err == nil {
		return p, nil
	} else if !errors.Is(err, ErrNotFound) {
		return "", err
	} else if err != ErrNotFound {
		f.logger().Warn("re-fetching", "reason", err)
	}
	err := f.retry(ctx, u, func() error { return f.fetchOnce(ctx, c, u, sum, name, size) })
	if err != nil {
		return "", err
	}
	return c.BlobPath(sum), nil
}

func (f *Fetcher) fetchOnce(ctx context.Context, c *Cache, u, sum, name string, size int64) error {
	rc, length, err := f.open(ctx, u)
	if err != nil {
		return err
	}
	defer rc.Close()
	if size == 0 {
		size = length
	}
	tmpf, err := workdir.Create(Tmp.In(c.Dir), "dl-")
	if err != nil {
		return err
	}
	tmp := tmpf.Name()
	// Whatever happens below (error, cancellation), the partial file goes away.
	defer os.Remove(tmp)
	h := sha256.New()
	pw := &progressWriter{w: progress.For(f.Progress, f.TTY), name: name, total: size, start: time.Now()}
	pw.begin()
	_, err = io.Copy(io.MultiWriter(tmpf, h, pw), rc)
	if cerr := tmpf.Close(); err == nil {
		err = cerr
	}
	pw.end(err)
	if err != nil {
		return fmt.Errorf("download %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return permanent(fmt.Errorf("download %s from %s: sha256 %s, expected %s", name, u, got, sum))
	}
	return c.commit(tmp, sum)
}

func (f *Fetcher) open(ctx context.Context, u string) (io.ReadCloser, int64, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, 0, permanent(err)
	}
	if pu.Scheme == "file" {
		fh, err := os.Open(pu.Path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, 0, permanent(fmt.Errorf("%s: %w", u, ErrNotOnServer))
			}
			return nil, 0, permanent(err)
		}
		st, _ := fh.Stat()
		return fh, st.Size(), nil
	}
	stall := f.Stall
	if stall <= 0 {
		stall = DefaultStall
	}
	// The attempt's own context, cancelled when nothing moves for the stall bound: from the
	// request until the answer's headers, then between reads of the body.
	sctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(stall, func() { cancel(fmt.Errorf("%w for %s", errStalled, stall)) })
	stop := func() {
		timer.Stop()
		cancel(nil)
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u, nil)
	if err != nil {
		stop()
		return nil, 0, permanent(err)
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		stop()
		return nil, 0, stalled(sctx, ctx, err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return &stallBody{rc: resp.Body, timer: timer, d: stall, ctx: sctx, parent: ctx, stop: stop}, resp.ContentLength, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		resp.Body.Close()
		stop()
		return nil, 0, permanent(fmt.Errorf("%s: HTTP %d: %w", u, resp.StatusCode, ErrNotOnServer))
	default:
		resp.Body.Close()
		stop()
		err := fmt.Errorf("%s: HTTP %s", u, resp.Status)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return nil, 0, permanent(err)
		}
		return nil, 0, err
	}
}

// stallBody is a response body whose reads keep the attempt's stall timer from firing.
type stallBody struct {
	rc          io.ReadCloser
	timer       *time.Timer
	d           time.Duration
	ctx, parent context.Context
	stop        func()
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	if err != nil && err != io.EOF {
		err = stalled(b.ctx, b.parent, err)
	}
	return n, err
}

func (b *stallBody) Close() error {
	err := b.rc.Close()
	b.stop()
	return err
}

// stalled names the stall as the cause of err when the attempt's context ctx ended by it (and
// not by the caller's parent).
func stalled(ctx, parent context.Context, err error) error {
	if cause := context.Cause(ctx); parent.Err() == nil && errors.Is(cause, errStalled) {
		return cause
	}
	return err
}

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func permanent(err error) error { return permanentError{err} }

func (f *Fetcher) retry(ctx context.Context, u string, op func() error) error {
	attempts, delay := f.Attempts, f.Backoff
	if attempts <= 0 {
		attempts = 4
	}
	if delay <= 0 {
		delay = 500 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		if err = op(); err == nil {
			return nil
		}
		var pe permanentError
		if errors.As(err, &pe) || ctx.Err() != nil {
			break
		}
		if i < attempts-1 {
			f.logger().Warn("download failed, retrying", "url", u, "attempt", i+1, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(delay):
			}
			delay *= 2
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%v: %w", err, ctx.Err())
	}
	var pe permanentError
	if errors.As(err, &pe) {
		return pe.error
	}
	return err
}

// progressWriter reports download progress through internal/progress: a bar beside the
// running step on a terminal, cleared when the download ends; otherwise one line when a
// download ends, and one when it starts if it is large enough to take a while.
type progressWriter struct {
	w     *progress.Writer
	name  string
	total int64
	done  int64
	start time.Time
	last  time.Time
}

// announceSize is the size from which a plain-lines download says it started.
const announceSize = 4 << 20

func (p *progressWriter) begin() {
	if p.w != nil && !p.w.TTY() && p.total >= announceSize {
		p.w.Printf("Downloading %s (%s)", p.name, HumanSize(p.total))
	}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.w.TTY() && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.w.Bar(p.name + " " + p.bar())
	}
	return len(b), nil
}

func (p *progressWriter) bar() string {
	if p.total <= 0 {
		return HumanSize(p.done)
	}
	const width = 30
	n := int(p.done * width / p.total)
	n = min(max(n, 0), width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < n {
			bar[i] = '#'
		}
	}
	return fmt.Sprintf("[%s] %s/%s", bar, HumanSize(p.done), HumanSize(p.total))
}

func (p *progressWriter) end(err error) {
	if p.w == nil {
		return
	}
	if p.w.TTY() {
		p.w.Bar("") // never left standing at its last redraw
		return
	}
	if err == nil {
		p.w.Printf("Downloaded %s (%s in %s)", p.name, HumanSize(p.done), progress.Elapsed(time.Since(p.start)))
	}
}

// HumanSize formats a byte count like "26.7 MB".
func HumanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
