package httpc

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingTransport proves the base client's transport is kept.
type countingTransport struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(r)
}

func testServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/target", http.StatusFound)
		case "/target":
			_, _ = io.WriteString(w, "followed")
		case "/body":
			_, _ = io.WriteString(w, strings.Repeat("x", 100))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirects(t *testing.T) {
	srv := testServer(t)
	errRedirect := errors.New("redirects are not followed")
	tests := []struct {
		name     string
		redirect error
		wantErr  error
		wantCode int
	}{
		{name: "nil hands the 3xx back", wantCode: http.StatusFound},
		{name: "ErrUseLastResponse hands the 3xx back", redirect: http.ErrUseLastResponse, wantCode: http.StatusFound},
		{name: "an error fails the call", redirect: errRedirect, wantErr: errRedirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(srv.Client(), Rules{Timeout: 5 * time.Second, Redirect: tt.redirect})
			resp, err := c.Get(srv.URL + "/redirect")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status = %d, want %d (redirect followed?)", resp.StatusCode, tt.wantCode)
			}
		})
	}
}

func TestMaxBody(t *testing.T) {
	srv := testServer(t)
	errBig := errors.New("too big")
	tests := []struct {
		name    string
		rules   Rules
		wantErr error
		wantLen int
	}{
		{name: "no limit", rules: Rules{Timeout: time.Second}, wantLen: 100},
		{name: "at the limit", rules: Rules{Timeout: time.Second, MaxBody: 100, TooLarge: errBig}, wantLen: 100},
		{name: "over the limit", rules: Rules{Timeout: time.Second, MaxBody: 99, TooLarge: errBig}, wantErr: errBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := &countingTransport{base: srv.Client().Transport}
			c := New(&http.Client{Transport: ct}, tt.rules)
			resp, err := c.Get(srv.URL + "/body")
			if ct.n.Load() != 1 {
				t.Fatalf("base transport used %d times, want 1", ct.n.Load())
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || len(b) != tt.wantLen {
				t.Fatalf("body %d bytes (err %v), want %d", len(b), err, tt.wantLen)
			}
		})
	}
}

func TestMaxBodyDefaultError(t *testing.T) {
	srv := testServer(t)
	c := New(srv.Client(), Rules{Timeout: time.Second, MaxBody: 10})
	_, err := c.Get(srv.URL + "/body")
	if err == nil || !strings.Contains(err.Error(), "response exceeds 10 bytes") {
		t.Fatalf("err = %v, want the default too-large error", err)
	}
}

func TestTimeoutCap(t *testing.T) {
	tests := []struct {
		name string
		base *http.Client
		want time.Duration
	}{
		{name: "nil base", base: nil, want: 10 * time.Second},
		{name: "no base timeout", base: &http.Client{}, want: 10 * time.Second},
		{name: "shorter base timeout kept", base: &http.Client{Timeout: 2 * time.Second}, want: 2 * time.Second},
		{name: "longer base timeout capped", base: &http.Client{Timeout: time.Minute}, want: 10 * time.Second},
		{name: "negative base timeout replaced", base: &http.Client{Timeout: -1}, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.base, Rules{Timeout: 10 * time.Second}).Timeout; got != tt.want {
				t.Fatalf("timeout = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBaseUnchanged(t *testing.T) {
	base := &http.Client{Timeout: time.Minute}
	c := New(base, Rules{Timeout: time.Second, MaxBody: 10})
	if c == base || base.Timeout != time.Minute || base.Transport != nil || base.CheckRedirect != nil {
		t.Fatalf("base modified: %+v", base)
	}
}

func TestTimeoutApplies(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c := New(srv.Client(), Rules{Timeout: 50 * time.Millisecond})
	_, err := c.Get(srv.URL)
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
}
