package exchange_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
)

// TestIssuedJWKS: the issued token's keys come from the shared JWKS
// implementation (credentials/jwks): an unknown kid refreshes the set at
// most once per interval, and an oversized or redirecting JWKS is refused.
func TestIssuedJWKS(t *testing.T) {
	f := newFixture(t, nil)
	other := newFixture(t, nil)
	var fetches atomic.Int64
	// Serves another STS's keys: the issued token's kid is never in them.
	wrongKeys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		resp, err := http.Get(other.sts.JWKSURL())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.Copy(w, resp.Body)
	}))
	defer wrongKeys.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"keys":[`+strings.Repeat(" ", 2<<20)+`]}`)
	}))
	defer huge.Close()
	redirect := httptest.NewServer(http.RedirectHandler(f.sts.JWKSURL(), http.StatusFound))
	defer redirect.Close()

	exchangeWith := func(jwksURL string) error {
		t.Helper()
		cfg := f.config(exchange.AuthPrivateKeyJWT)
		cfg.IssuedIssuer, cfg.JWKSURL = f.sts.URL(), jwksURL
		c, _ := f.client(t, cfg)
		_, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
		return err
	}

	t.Run("unknown kid refresh is rate limited", func(t *testing.T) {
		cfg := f.config(exchange.AuthPrivateKeyJWT)
		cfg.IssuedIssuer, cfg.JWKSURL = f.sts.URL(), wrongKeys.URL
		c, _ := f.client(t, cfg)
		steps := []struct {
			advance time.Duration
			fetches int64
		}{
			{0, 1},                // initial fetch
			{0, 1},                // unknown kid right after: no refresh
			{10 * time.Second, 1}, // still inside the interval
			{31 * time.Second, 2}, // one refresh
			{0, 2},
		}
		for i, s := range steps {
			f.now = f.now.Add(s.advance)
			_, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
			if e := asError(t, err); e.Reason != exchange.ReasonIssuedInvalid {
				t.Fatalf("step %d: %v", i, err)
			}
			if n := fetches.Load(); n != s.fetches {
				t.Fatalf("step %d: %d JWKS fetches, want %d", i, n, s.fetches)
			}
		}
	})
	for name, u := range map[string]string{"oversized JWKS": huge.URL, "redirecting JWKS": redirect.URL} {
		t.Run(name, func(t *testing.T) {
			if e := asError(t, exchangeWith(u)); e.Reason != exchange.ReasonIssuedInvalid {
				t.Fatalf("error = %v", e)
			}
		})
	}
	t.Run("good JWKS", func(t *testing.T) {
		if err := exchangeWith(f.sts.JWKSURL()); err != nil {
			t.Fatal(err)
		}
	})
}
