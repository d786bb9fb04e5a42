package outbound

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSource issues "tok-<n>" tokens valid for ttl and records what it was
// asked for.
type fakeSource struct {
	clock *fakeClock
	ttl   time.Duration
	calls atomic.Int32
	gate  chan struct{} // when non-nil, obtain waits on it
	err   error

	mu   sync.Mutex
	seen []delegation
}

func (f *fakeSource) name() string { return "fake" }

func (f *fakeSource) obtain(_ context.Context, d *delegation) (string, time.Time, error) {
	n := f.calls.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	f.seen = append(f.seen, *d)
	f.mu.Unlock()
	if f.err != nil {
		return "", time.Time{}, f.err
	}
	return fmt.Sprintf("tok-%d", n), f.clock.Now().Add(f.ttl), nil
}

func newTestDelegated(t *testing.T, src *fakeSource, cfg DelegatedConfig) *delegatedProvider {
	t.Helper()
	cfg.Issuer = "builtin"
	p, err := newDelegatedCore(src, &cfg, Options{Now: src.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cache.Close)
	return p
}

func delegatedReq(token, actor string, scopes ...string) *Request {
	return &Request{
		ServerID: "docs", Audience: "https://docs.example.com/mcp", Subject: "alice", Kind: "human",
		Actor: actor, Scopes: scopes, SubjectToken: token, SubjectTokenHash: sha256.Sum256([]byte(token)),
	}
}

func TestDelegatedCacheKeys(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{clock: clock, ttl: 5 * time.Minute}
	p := newTestDelegated(t, src, DelegatedConfig{Scopes: []string{"docs:read", "docs:write"}})
	ctx := context.Background()

	first, err := p.Credential(ctx, delegatedReq("t1", "", "docs:read"))
	if err != nil {
		t.Fatal(err)
	}
	if got := first.Headers[0]; got.Name != "authorization" || got.Value != "Bearer tok-1" {
		t.Fatalf("header = %s %q", got.Name, got.Value)
	}
	if first.Mode != ModeDelegated || first.Subject != "alice" || first.Audience != "https://docs.example.com/mcp" ||
		!slices.Equal(first.Scopes, []string{"docs:read"}) {
		t.Fatalf("credential = %v", first)
	}
	// Same key: cached.
	again, err := p.Credential(ctx, delegatedReq("t1", "", "docs:read"))
	if err != nil || again != first {
		t.Fatalf("want the cached credential, got %v, %v", again, err)
	}
	// Every key part separates entries.
	others := []*Request{
		delegatedReq("t2", "", "docs:read"),               // another subject token
		delegatedReq("t1", "agent-1", "docs:read"),        // an actor
		delegatedReq("t1", "", "docs:read", "docs:write"), // other scopes
	}
	aud := delegatedReq("t1", "", "docs:read")
	aud.Audience = "https://other.example.com/mcp"
	others = append(others, aud)
	for i, r := range others {
		c, err := p.Credential(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if c == first {
			t.Fatalf("request %d was served another key's token", i)
		}
	}
	if n := src.calls.Load(); n != 5 {
		t.Fatalf("obtain called %d times, want 5", n)
	}
}

func TestDelegatedExpiresBeforeToken(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{clock: clock, ttl: 5 * time.Minute}
	p := newTestDelegated(t, src, DelegatedConfig{})
	ctx := context.Background()
	c1, err := p.Credential(ctx, delegatedReq("t1", ""))
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(3*time.Minute + 59*time.Second) // margin is min(1m, 5m/5) = 1m
	if c, _ := p.Credential(ctx, delegatedReq("t1", "")); c != c1 {
		t.Fatal("token was replaced before its refresh margin")
	}
	clock.Advance(2 * time.Second)
	c2, err := p.Credential(ctx, delegatedReq("t1", ""))
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 || !c2.ExpiresAt.After(clock.Now()) {
		t.Fatalf("want a fresh token inside the margin, got %v", c2)
	}
}

func TestDelegatedCollapsesConcurrentMisses(t *testing.T) {
	clock := newFakeClock()
	src := &fakeSource{clock: clock, ttl: 5 * time.Minute, gate: make(chan struct{})}
	p := newTestDelegated(t, src, DelegatedConfig{})
	const n = 1000
	var wg sync.WaitGroup
	creds := make([]*Credential, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			creds[i], errs[i] = p.Credential(context.Background(), delegatedReq("t1", "agent-1", "docs:read"))
		})
	}
	for src.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let the rest pile up on the flight
	close(src.gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || creds[i] != creds[0] {
			t.Fatalf("call %d: %v %v", i, creds[i], errs[i])
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("%d concurrent cold calls caused %d issuances, want 1", n, got)
	}
	// And the next caller is served from cache.
	if _, err := p.Credential(context.Background(), delegatedReq("t1", "agent-1", "docs:read")); err != nil || src.calls.Load() != 1 {
		t.Fatalf("after the flight: err %v, calls %d", err, src.calls.Load())
	}
}

func TestDelegatedDescope(t *testing.T) {
	tests := []struct {
		name     string
		max      []string
		defaults []string
		granted  []string
		want     []string
		reason   string
	}{
		{"granted within max", []string{"a", "b", "c"}, nil, []string{"b", "a"}, []string{"a", "b"}, ""},
		{"beyond max dropped", []string{"a"}, nil, []string{"a", "admin"}, []string{"a"}, ""},
		{"duplicates removed", nil, nil, []string{"a", "a"}, []string{"a"}, ""},
		{"none grantable", []string{"a"}, nil, []string{"admin"}, nil, ReasonScopeNotGrantable},
		{"defaults when none granted", []string{"a", "b"}, []string{"b"}, nil, []string{"b"}, ""},
		{"nothing at all", nil, nil, nil, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeSource{clock: newFakeClock(), ttl: time.Minute}
			p := newTestDelegated(t, src, DelegatedConfig{Scopes: tc.max, DefaultScopes: tc.defaults})
			c, err := p.Credential(context.Background(), delegatedReq("t", "", tc.granted...))
			if tc.reason != "" {
				var oe *Error
				if !errors.As(err, &oe) || oe.Reason != tc.reason || oe.Transient {
					t.Fatalf("err = %v, want %s", err, tc.reason)
				}
				if src.calls.Load() != 0 {
					t.Fatal("a refused scope request still reached the issuer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Scopes, tc.want) || !slices.Equal(src.seen[0].scopes, tc.want) {
				t.Fatalf("scopes = %v (asked %v), want %v", c.Scopes, src.seen[0].scopes, tc.want)
			}
		})
	}
}

func TestDelegatedRefusals(t *testing.T) {
	clock := newFakeClock()
	ctx := context.Background()
	t.Run("anonymous", func(t *testing.T) {
		src := &fakeSource{clock: clock, ttl: time.Minute}
		p := newTestDelegated(t, src, DelegatedConfig{})
		_, err := p.Credential(ctx, &Request{Kind: "anonymous"})
		var oe *Error
		if !errors.As(err, &oe) || oe.Reason != ReasonNoSubject {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("source error passes through, nothing cached", func(t *testing.T) {
		src := &fakeSource{clock: clock, ttl: time.Minute, err: &Error{Reason: ReasonTokenUnavailable, Transient: true}}
		p := newTestDelegated(t, src, DelegatedConfig{})
		for range 2 {
			_, err := p.Credential(ctx, delegatedReq("t", ""))
			var oe *Error
			if !errors.As(err, &oe) || oe.Reason != ReasonTokenUnavailable || !oe.Transient {
				t.Fatalf("err = %v", err)
			}
		}
		if src.calls.Load() != 2 {
			t.Fatalf("failures must not be cached; calls = %d", src.calls.Load())
		}
	})
	t.Run("caller actor token required for agent_for_user", func(t *testing.T) {
		src := &fakeSource{clock: clock, ttl: time.Minute}
		cfg := DelegatedConfig{ActorToken: &ActorTokenConfig{Source: ActorFromCaller}}
		p := newTestDelegated(t, src, cfg)
		r := delegatedReq("t", "agent-1")
		r.Kind = "agent_for_user"
		_, err := p.Credential(ctx, r)
		var oe *Error
		if !errors.As(err, &oe) || oe.Reason != ReasonNoActorToken {
			t.Fatalf("err = %v", err)
		}
		actorJWT := func(sub string) string {
			return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"`+sub+`"}`)) + ".sig"
		}
		for _, bad := range []string{"Bearer " + actorJWT("agent-2"), "x y", "Bearer opaque", "b"} {
			r.Headers = map[string]string{DefaultActorTokenHeader: bad}
			if _, err := p.Credential(ctx, r); !errors.As(err, &oe) || oe.Reason != ReasonActorMismatch {
				t.Fatalf("actor token %q: err = %v, want %s", bad, err, ReasonActorMismatch)
			}
		}
		r.Headers = map[string]string{DefaultActorTokenHeader: "Bearer " + actorJWT("agent-1")}
		if _, err := p.Credential(ctx, r); err != nil {
			t.Fatal(err)
		}
		if got := src.seen[0].actorToken; got != actorJWT("agent-1") {
			t.Fatalf("actor token = %q", got)
		}
		if strings.Join(p.ConsumedHeaders(), ",") != DefaultActorTokenHeader {
			t.Fatalf("consumed headers = %v", p.ConsumedHeaders())
		}
	})
}

func BenchmarkDelegatedWarm(b *testing.B) {
	src := &fakeSource{clock: newFakeClock(), ttl: time.Hour}
	cfg := DelegatedConfig{Issuer: "builtin", Scopes: []string{"docs:read", "docs:write"}}
	p, err := newDelegatedCore(src, &cfg, Options{Now: src.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	req := delegatedReq("t1", "agent-1", "docs:read")
	ctx := context.Background()
	if _, err := p.Credential(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Credential(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
