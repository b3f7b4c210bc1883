package oci

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/ukernel-dev/ukernel/internal/cache"
	"github.com/ukernel-dev/ukernel/internal/progress"
	"github.com/ukernel-dev/ukernel/internal/userconfig"
)

// Options are the transport settings of one command.
type Options struct {
	Insecure bool   // --insecure: plain HTTP, for loopback and names config.toml lists
	Username string // --username (with Password from --password-stdin); else the credential stores
	Password string
	Config   *userconfig.Config
	Logger   *slog.Logger
	Progress *progress.Writer
	// Stall bounds how long a blob transfer may go without moving a byte (default 60 s).
	Stall time.Duration
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Store is what push, pull and verify read and write: a registry repository, a layout
// directory or an archive.
type Store interface {
	oras.Target
	content.PredecessorFinder
}

// Per-request deadlines; a blob's body is bounded by Options.Stall instead (it may be large).
const (
	dialTimeout   = 15 * time.Second
	headerTimeout = 60 * time.Second
	defaultStall  = 60 * time.Second
)

// repository opens a registry repository with credentials, TLS as configured and retries.
func (o *Options) repository(ref Ref) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref.Reg.Registry + "/" + ref.Reg.Repository)
	if err != nil {
		return nil, err
	}
	host := ref.Reg.Registry
	var settings userconfig.RegistrySection
	if o.Config != nil {
		settings = o.Config.Registry(host)
	}
	if o.Insecure {
		if !isLoopback(host) && !settings.Insecure {
			return nil, fmt.Errorf("--insecure: plain HTTP is allowed only to a loopback address or to a registry listed in config.toml as [registry.%q] insecure = true; %s is neither", host, host)
		}
		repo.PlainHTTP = true
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if settings.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(settings.CAFile)
		if err != nil {
			return nil, fmt.Errorf("[registry.%q] ca_file: %w", host, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[registry.%q] ca_file %s: no PEM certificate in it", host, settings.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   dialTimeout,
		ResponseHeaderTimeout: headerTimeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	cred, err := o.credential(host)
	if err != nil {
		return nil, err
	}
	repo.Client = &auth.Client{
		Client:     &http.Client{Transport: retry.NewTransport(base)},
		Header:     http.Header{"User-Agent": {"ukernel"}},
		Credential: cred,
		Cache:      auth.NewCache(),
	}
	return repo, nil
}

// credential picks the credential source: the flags, else REGISTRY_AUTH_FILE, else docker's
// config.json with its credential helpers.
func (o *Options) credential(host string) (auth.CredentialFunc, error) {
	if o.Username != "" {
		return auth.StaticCredential(host, auth.Credential{Username: o.Username, Password: o.Password}), nil
	}
	var store credentials.Store
	var err error
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		store, err = credentials.NewStore(f, credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("REGISTRY_AUTH_FILE %s: %w", f, err)
		}
	} else {
		store, err = credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("docker config.json: %w", err)
		}
	}
	return credentials.Credential(store), nil
}

func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// openRead returns the store a reference points to, to read from.
func (o *Options) openRead(ctx context.Context, ref Ref) (oras.ReadOnlyGraphTarget, error) {
	switch ref.Kind {
	case KindLayout:
		if _, err := os.Stat(ref.Path); err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", ref.Path, err)
		}
		st, err := oci.NewWithContext(ctx, ref.Path)
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", ref.Path, err)
		}
		return st, nil
	case KindArchive:
		st, err := oci.NewFromTar(ctx, ref.Path)
		if err != nil {
			return nil, fmt.Errorf("OCI archive %s: %w", ref.Path, err)
		}
		return st, nil
	}
	return o.repository(ref)
}

// openWrite returns the store a reference points to, to write to. finish publishes what was
// written (an archive is written whole, atomically, from a layout beside it); cleanup removes
// what is left behind, whether or not finish ran.
func (o *Options) openWrite(ctx context.Context, ref Ref) (s oras.GraphTarget, finish func() error, cleanup func(), err error) {
	nop := func() error { return nil }
	switch ref.Kind {
	case KindLayout:
		st, err := oci.NewWithContext(ctx, ref.Path)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("OCI layout %s: %w", ref.Path, err)
		}
		return st, nop, func() {}, nil
	case KindArchive:
		return openArchiveForWrite(ctx, ref.Path)
	}
	repo, err := o.repository(ref)
	if err != nil {
		return nil, nil, nil, err
	}
	return repo, nop, func() {}, nil
}

// retryable reports whether a failed transfer is worth trying again: a broken connection, a
// server error, too many requests.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode >= 500 || er.StatusCode == http.StatusTooManyRequests || er.StatusCode == http.StatusRequestTimeout
	}
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, errStalled) || errors.As(err, &ne)
}

// withRetry runs op until it succeeds, fails for good, or has been tried attempts times, with
// exponential backoff between tries. The retry transport already repeats single requests; this
// repeats whole blob transfers, whose streamed bodies it cannot replay.
func withRetry(ctx context.Context, log *slog.Logger, what string, op func() error) error {
	const attempts = 4
	delay := 500 * time.Millisecond
	for i := 1; ; i++ {
		err := op()
		if err == nil || i == attempts || !retryable(err) {
			return err
		}
		log.Warn("transfer failed, retrying", "what", what, "attempt", i, "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

var errStalled = errors.New("transfer stalled: no data moved")

// stallReader cancels its transfer when no byte has moved for d.
type stallReader struct {
	r      io.Reader
	timer  *time.Timer
	d      time.Duration
	cancel context.CancelCauseFunc
}

func newStallTimer(s *stallReader) *time.Timer {
	return time.AfterFunc(s.d, func() { s.cancel(fmt.Errorf("%w for %s", errStalled, s.d)) })
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

// progressReader draws a blob's bar on a terminal and a line when a large one ends elsewhere.
type progressReader struct {
	r     io.Reader
	w     *progress.Writer
	label string
	total int64
	done  int64
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.w.TTY() && time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.w.Bar(fmt.Sprintf("%s %s", p.label, bar(p.done, p.total)))
	}
	return n, err
}

func bar(done, total int64) string {
	const width = 30
	n := 0
	if total > 0 {
		n = int(min(max(done*width/total, 0), width))
	}
	return fmt.Sprintf("[%s%s] %s/%s", strings.Repeat("#", n), strings.Repeat(" ", width-n), cache.HumanSize(done), cache.HumanSize(total))
}

func (p *progressReader) end() {
	if p.w.TTY() {
		p.w.Bar("")
	}
}

// explain adds what to do to the errors a user can fix: missing or refused credentials, a
// certificate no root vouches for.
func explain(err error, ref Ref) error {
	if err == nil || ref.Kind != KindRegistry {
		return err
	}
	host := ref.Reg.Registry
	var er *errcode.ErrorResponse
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("%w: registry %s asks for a user name and password (unauthorized); log in with docker login or podman login (REGISTRY_AUTH_FILE), or pass --username and --password-stdin", err, host)
	case errors.As(err, &er) && er.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%w: registry %s refused the credentials (unauthorized)", err, host)
	case errors.As(err, &er) && er.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: registry %s denies this user access to %s", err, host, ref.Reg.Repository)
	case errors.As(err, &ua), errors.As(err, &hn):
		return fmt.Errorf("%w: the TLS certificate of %s is not trusted; add its CA as [registry.%q] ca_file in config.toml", err, host, host)
	}
	return err
}
