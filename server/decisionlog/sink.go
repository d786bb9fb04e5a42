package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// maxErrorBody is how much of an error response is quoted in errors.
const maxErrorBody = 200

// maxDrainBody is how much of a response is read (and discarded) so the
// connection can be reused.
const maxDrainBody = 64 << 10

// fileSink appends batches to a file: JSON lines, or one gzip member per
// batch.
type fileSink struct {
	f    *os.File
	path string
	gz   *gzip.Writer // nil unless cfg.Gzip
}

func newFileSink(cfg Config) (*fileSink, error) {
	f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("decisionlog: open output: %w", err)
	}
	s := &fileSink{f: f, path: cfg.File}
	if cfg.Gzip {
		s.gz = gzip.NewWriter(io.Discard)
	}
	return s, nil
}

func (s *fileSink) deliver(_ context.Context, b *batch) (bool, error) {
	data := b.buf.Bytes()
	if s.gz != nil {
		var out bytes.Buffer
		s.gz.Reset(&out)
		_, _ = s.gz.Write(data)
		if err := s.gz.Close(); err != nil {
			return false, fmt.Errorf("decisionlog: gzip: %w", err)
		}
		data = out.Bytes()
	}
	// One write per batch: a failed write loses (only) this batch.
	if _, err := s.f.Write(data); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the PathError repeats the path
		}
		return false, fmt.Errorf("decisionlog: write %s: %w", s.path, err)
	}
	return false, nil
}

func (s *fileSink) close() error {
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("decisionlog: close output: %w", err)
	}
	return nil
}

// httpSink POSTs batches as OPA does: a gzip'd JSON array with
// Content-Type application/json and Content-Encoding gzip.
type httpSink struct {
	client    *http.Client
	url       string
	safeURL   string // scheme://host/path, for errors
	token     secret.Value
	userAgent string
	gz        *gzip.Writer
}

func newHTTPSink(cfg Config, opts Options) (*httpSink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil { // already validated
		return nil, errors.New("decisionlog: url: must be an absolute URL")
	}
	s := &httpSink{
		url:       cfg.URL,
		safeURL:   u.Scheme + "://" + u.Host + u.EscapedPath(),
		userAgent: "mcpauthz",
		gz:        gzip.NewWriter(io.Discard),
	}
	if opts.Version != "" {
		s.userAgent += "/" + opts.Version
	}
	if cfg.BearerToken != nil {
		v, err := cfg.BearerToken.Resolve()
		if err != nil {
			return nil, fmt.Errorf("decisionlog: bearer_token: %w", err)
		}
		s.token = v
	}
	var c http.Client
	if opts.HTTPClient != nil {
		c = *opts.HTTPClient
	} else {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.client = &c
	return s, nil
}

func (s *httpSink) deliver(ctx context.Context, b *batch) (bool, error) {
	if len(b.body) == 0 {
		b.body = s.encode(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(b.body))
	if err != nil {
		return false, fmt.Errorf("decisionlog: upload to %s: %w", s.safeURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("User-Agent", s.userAgent)
	if !s.token.IsZero() {
		req.Header.Set("Authorization", "Bearer "+s.token.Reveal())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error repeats the full URL
		}
		return true, fmt.Errorf("decisionlog: upload to %s: %w", s.safeURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBody))
		return false, nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBody))
	msg := s.sanitize(head)
	retry := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
	kind := "HTTP " + strconv.Itoa(resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		kind += " (redirects are not followed)"
	}
	if msg != "" {
		return retry, fmt.Errorf("decisionlog: upload to %s: %s: %s", s.safeURL, kind, msg)
	}
	return retry, fmt.Errorf("decisionlog: upload to %s: %s", s.safeURL, kind)
}

// encode returns the gzip'd JSON array of b's events (b.buf holds one JSON
// document per line; documents contain no raw newline).
func (s *httpSink) encode(b *batch) []byte {
	var out bytes.Buffer
	out.Grow(b.buf.Len()/4 + 64)
	s.gz.Reset(&out)
	data := b.buf.Bytes()
	_, _ = s.gz.Write([]byte{'['})
	for first := true; len(data) > 0; first = false {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			i = len(data)
		}
		if !first {
			_, _ = s.gz.Write([]byte{','})
		}
		_, _ = s.gz.Write(data[:i])
		data = data[min(i+1, len(data)):]
	}
	_, _ = s.gz.Write([]byte{']'})
	_ = s.gz.Close() // writes to a bytes.Buffer cannot fail
	return out.Bytes()
}

// sanitize makes a response body excerpt safe to log: valid UTF-8, no
// control characters, the bearer token (should the endpoint echo it)
// redacted, at most maxErrorBody bytes.
func (s *httpSink) sanitize(body []byte) string {
	t := strings.ToValidUTF8(string(body), "?")
	if tok := s.token.Reveal(); tok != "" {
		t = strings.ReplaceAll(t, tok, secret.Redacted)
	}
	t = strings.Map(func(r rune) rune {
		if urlcheck.IsControl(r) {
			return ' '
		}
		return r
	}, t)
	t = strings.TrimSpace(t)
	if len(t) > maxErrorBody {
		t = strings.ToValidUTF8(t[:maxErrorBody], "") + "..."
	}
	return t
}

func (s *httpSink) close() error { s.client.CloseIdleConnections(); return nil }
