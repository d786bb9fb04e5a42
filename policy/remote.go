package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Backoff after failed downloads: full jitter over
// [0, min(MaxDelay, backoffBase·2^(failures-1))], at least backoffFloor.
const (
	backoffBase  = time.Second
	backoffFloor = 100 * time.Millisecond
	maxRedirects = 5
)

// backoffDelay is the wait after the given number of consecutive failures
// (>= 1). randN(n) returns a uniform value in [0, n).
func backoffDelay(failures int, maxDelay time.Duration, randN func(int64) int64) time.Duration {
	ceil := maxDelay
	if failures < 1 {
		failures = 1
	}
	if failures <= 32 {
		if c := backoffBase << (failures - 1); c > 0 && c < maxDelay {
			ceil = c
		}
	}
	return max(time.Duration(randN(int64(ceil)+1)), backoffFloor)
}

// pollDelay is the wait after a successful poll: uniform in [min, max].
func pollDelay(p Polling, randN func(int64) int64) time.Duration {
	return p.MinDelay + time.Duration(randN(int64(p.MaxDelay-p.MinDelay)+1))
}

// displayURL renders a bundle URL for status, logs and errors: no user
// info, and a query string (presigned URLs carry credentials there) shown
// as "?...".
func displayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid url>"
	}
	d := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := d.String()
	if u.RawQuery != "" {
		s += "?..."
	}
	return s
}

// newClient builds the HTTP client of a url source: its own transport (so
// connections are not shared with other components), the per-request
// timeout and same-origin redirects only.
func (e *Engine) newClient(s *source) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = dt.Clone()
	}
	tr.ResponseHeaderTimeout = s.cfg.Timeout
	return &http.Client{
		Transport: tr,
		Timeout:   s.cfg.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			first := via[0].URL
			if req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
				return fmt.Errorf("redirect to another origin (%s://%s) refused", req.URL.Scheme, req.URL.Host)
			}
			return nil
		},
	}
}

// errNotModified reports a 304 answer.
var errNotModified = errors.New("not modified")

// fetch downloads, verifies and reads the bundle of s. It returns
// errNotModified when the server answered 304 to If-None-Match: etag.
func (e *Engine) fetch(ctx context.Context, s *source, etag string) (*candidate, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	shown := displayURL(s.cfg.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: bad request", shown)
	}
	req.Header.Set("Accept", "application/gzip, application/octet-stream")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	if cr := s.cfg.Credentials; cr != nil && cr.Bearer != nil {
		tok, err := cr.Bearer.Token.Resolve() // errors name the ref, never the value
		if err != nil {
			return nil, fmt.Errorf("download %s: credentials: %w", shown, err)
		}
		scheme := cr.Bearer.Scheme
		if scheme == "" {
			scheme = "Bearer"
		}
		req.Header.Set("Authorization", scheme+" "+tok.Reveal())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message repeats the URL (query included)
			err = ue.Err
		}
		return nil, fmt.Errorf("download %s: %w", shown, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if etag == "" {
			return nil, fmt.Errorf("download %s: 304 Not Modified without If-None-Match", shown)
		}
		return nil, errNotModified
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // allow connection reuse
		return nil, fmt.Errorf("download %s: unexpected status %s", shown, resp.Status)
	}
	limit := s.cfg.SizeLimitBytes
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("download %s: bundle is too large (%d bytes, size_limit_bytes %d)", shown, resp.ContentLength, limit)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("download %s: read body: %w", shown, err)
	}
	if n > limit {
		return nil, fmt.Errorf("download %s: bundle is too large (more than size_limit_bytes %d)", shown, limit)
	}
	raw := buf.Bytes()
	rb, err := readTarball(ctx, s.cfg.Name, raw, s.vc)
	if err != nil {
		return nil, err
	}
	return &candidate{src: s, rb: rb, raw: raw, etag: resp.Header.Get("ETag"), from: FromDownload}, nil
}

// initialFetch gets the first bundle of s for New: a download, or the
// persisted copy when the download fails. Without a copy it retries with
// backoff until StartupTimeout.
func (e *Engine) initialFetch(ctx context.Context, s *source) (*candidate, error) {
	persisted, perr := e.readPersisted(ctx, s)
	if perr != nil {
		e.log.Warn("policy: ignoring unusable persisted bundle", "bundle", s.cfg.Name, "error", perr)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StartupTimeout)
	defer cancel()
	for {
		start := time.Now()
		c, err := e.fetch(ctx, s, "")
		if err == nil {
			c.fallback = persisted
			return c, nil
		}
		s.failures++
		e.recordFetch(s, start, err)
		if persisted != nil {
			e.log.Warn("policy: bundle download failed; starting from the persisted bundle",
				"bundle", s.cfg.Name, "error", err)
			return persisted, nil
		}
		d := backoffDelay(s.failures, s.cfg.Polling.MaxDelay, e.randN)
		e.log.Warn("policy: bundle download failed; retrying", "bundle", s.cfg.Name, "error", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if perr != nil {
				err = fmt.Errorf("%w (persisted copy unusable: %w)", err, perr)
			}
			return nil, fmt.Errorf("no bundle within startup_timeout %s and no persisted copy: %w", e.cfg.StartupTimeout, err)
		case <-t.C:
		}
	}
}

// recordFetch records a download attempt of s that ended before activation:
// err is nil for 304 Not Modified, which counts as a success.
func (e *Engine) recordFetch(s *source, start time.Time, err error) {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	e.status.LastAttempt = start
	s.st.LastAttempt = start
	if err == nil {
		s.st.LastError, s.st.LastSuccess = "", start
		return
	}
	e.status.Failures++
	s.st.LastError = fmt.Sprintf("policy: bundle %s: %v", s.cfg.Name, err)
}

// pollOnce checks s for a new bundle, activates it if there is one, and
// returns how long to wait before the next poll. Errors are recorded in
// Status and logged; the serving policy is kept.
func (e *Engine) pollOnce(ctx context.Context, s *source) time.Duration {
	e.reloadMu.Lock()
	etag := s.etag
	e.reloadMu.Unlock()
	start := time.Now()
	c, err := e.fetch(ctx, s, etag)
	switch {
	case errors.Is(err, errNotModified):
		e.recordFetch(s, start, nil)
		err = nil
	case err != nil:
		e.recordFetch(s, start, err)
		e.log.Warn("policy: bundle download failed; previous policy keeps serving",
			"bundle", s.cfg.Name, "error", err, "serving", e.snap.Load() != nil)
	default:
		err = e.apply(ctx, c) // records and logs
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		s.failures++
		return backoffDelay(s.failures, s.cfg.Polling.MaxDelay, e.randN)
	}
	s.failures = 0
	return pollDelay(s.cfg.Polling, e.randN)
}

// pollRemote runs the poll loop of s until ctx is done.
func (e *Engine) pollRemote(ctx context.Context, s *source) {
	d := pollDelay(s.cfg.Polling, e.randN)
	if s.failures > 0 { // started from a persisted copy
		d = backoffDelay(s.failures, s.cfg.Polling.MaxDelay, e.randN)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(e.pollOnce(ctx, s))
	}
}
