package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
)

// TestQualifiedSubject: the subject sent upstream is qualified by the user
// namespace, so the same sub from unrelated issuers never names one user,
// while issuers sharing a namespace do; a globally unique issuer keeps its
// raw sub but cannot forge another issuer's qualified subject.
func TestQualifiedSubject(t *testing.T) {
	clk := newClock()
	corp, app, partner, dir := startIdP(t, clk), startIdP(t, clk), startIdP(t, clk), startIdP(t, clk)
	v := newVerifier(t, clk, Config{
		Issuers: []IssuerConfig{
			{Name: "corp", Issuer: corp.URL(), UserNamespace: "people"},
			{Name: "app", Issuer: app.URL(), UserNamespace: "people"},
			{Name: "partner", Issuer: partner.URL()},
			{Name: "dir", Issuer: dir.URL(), SubjectsGloballyUnique: true},
		},
		SPIFFE: SPIFFEConfig{TrustDomains: []string{"agents.example.org"}},
	})
	tests := []struct {
		name   string
		idp    *devidp.Issuer
		claims map[string]any
		want   string // QualifiedSubject
		actor  string // Actor.QualifiedSubject
		reason string
	}{
		{name: "namespace people via corp", idp: corp, claims: map[string]any{"sub": "alice"}, want: "people/alice"},
		{name: "same namespace via app: same subject", idp: app, claims: map[string]any{"sub": "alice"}, want: "people/alice"},
		{name: "other namespace: different subject", idp: partner, claims: map[string]any{"sub": "alice"}, want: "partner/alice"},
		{name: "globally unique: raw sub", idp: dir, claims: map[string]any{"sub": "alice"}, want: "alice"},
		{name: "sub with slash in a qualifying namespace", idp: partner, claims: map[string]any{"sub": "people/alice"}, want: "partner/people/alice"},
		{name: "globally unique sub with an unconfigured prefix", idp: dir, claims: map[string]any{"sub": "users/42"}, want: "users/42"},
		{name: "globally unique sub with its own namespace", idp: dir, claims: map[string]any{"sub": "dir/42"}, want: "dir/42"},
		{name: "globally unique sub forging people/alice", idp: dir, claims: map[string]any{"sub": "people/alice"}, reason: ReasonAmbiguousSubject},
		{name: "globally unique sub forging partner/x", idp: dir, claims: map[string]any{"sub": "partner/x"}, reason: ReasonAmbiguousSubject},
		{name: "globally unique sub forging a SPIFFE id", idp: dir, claims: map[string]any{"sub": "spiffe://agents.example.org/bot"}, reason: ReasonAmbiguousSubject},
		{name: "globally unique sub forging a SPIFFE id, upper case", idp: dir, claims: map[string]any{"sub": "SPIFFE://agents.example.org/bot"}, reason: ReasonAmbiguousSubject},
		{name: "globally unique sub forging an unconfigured actor issuer", idp: dir, claims: map[string]any{"sub": "iss:https:%2F%2Fx/bot"}, reason: ReasonAmbiguousSubject},
		{name: "actor without iss: token issuer's namespace", idp: corp,
			claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "bot"}}, want: "people/alice", actor: "people/bot"},
		{name: "actor from a configured issuer", idp: corp,
			claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "bot", "iss": partner.URL()}}, want: "people/alice", actor: "partner/bot"},
		{name: "actor from the globally unique issuer", idp: corp,
			claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "bot", "iss": dir.URL()}}, want: "people/alice", actor: "bot"},
		{name: "actor from the globally unique issuer forging people/bot", idp: corp,
			claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "people/bot", "iss": dir.URL()}}, reason: ReasonAmbiguousSubject},
		{name: "actor from an unconfigured issuer", idp: corp,
			claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "bot", "iss": "https://agents.example/t/1"}}, want: "people/alice", actor: "iss:https:%2F%2Fagents.example%2Ft%2F1/bot"},
		{name: "actor with a non-string iss", idp: corp,
			claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "bot", "iss": true}}, reason: ReasonInvalidClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.VerifyToken(context.Background(), tc.idp.MustMint(tc.claims))
			if got := reason(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if err != nil {
				return
			}
			if p.QualifiedSubject != tc.want {
				t.Fatalf("QualifiedSubject = %q, want %q", p.QualifiedSubject, tc.want)
			}
			if p.Subject != tc.claims["sub"] {
				t.Fatalf("Subject = %q changed", p.Subject)
			}
			got := ""
			if p.Actor != nil {
				got = p.Actor.QualifiedSubject
			}
			if got != tc.actor {
				t.Fatalf("Actor.QualifiedSubject = %q, want %q", got, tc.actor)
			}
		})
	}

	sp, err := v.FromSPIFFE("spiffe://agents.example.org/bot")
	if err != nil {
		t.Fatal(err)
	}
	if sp.QualifiedSubject != "spiffe://agents.example.org/bot" {
		t.Fatalf("SPIFFE QualifiedSubject = %q", sp.QualifiedSubject)
	}
}

func TestCheckNamespace(t *testing.T) {
	for _, ns := range []string{"a", "people", "acme-users", "a.b_c-9", "0", strings.Repeat("a", 64)} {
		if err := checkNamespace(ns); err != nil {
			t.Errorf("%q refused: %v", ns, err)
		}
	}
	for _, ns := range []string{"", "A", "people/x", "-a", ".a", "_a", "a b", "a:b", "é", "spiffe", strings.Repeat("a", 65), "a|b", "a%b"} {
		if err := checkNamespace(ns); err == nil {
			t.Errorf("%q accepted", ns)
		}
	}
}

func TestSubjectConfigValidate(t *testing.T) {
	iss := func(name, ns string, global bool) IssuerConfig {
		return IssuerConfig{Name: name, Issuer: "https://" + name + ".example", UserNamespace: ns, SubjectsGloballyUnique: global}
	}
	tests := []struct {
		name    string
		issuers []IssuerConfig
		want    []string
	}{
		{"valid mix", []IssuerConfig{iss("a", "people", true), iss("b", "people", true), iss("c", "", false)}, nil},
		{"bad namespace", []IssuerConfig{iss("a", "People/x", false)}, []string{"issuers[0].user_namespace: must match"}},
		{"reserved namespace", []IssuerConfig{iss("a", "spiffe", false)}, []string{`issuers[0].user_namespace: "spiffe" is reserved`}},
		{"name used as namespace", []IssuerConfig{iss("Corp", "", false)}, []string{"issuers[0].name: used as the user namespace", "or set user_namespace"}},
		{"name fine when namespace set", []IssuerConfig{iss("Corp", "corp", false)}, nil},
		{"namespace disagrees", []IssuerConfig{iss("a", "people", true), iss("b", "people", false)},
			[]string{`issuers[1].subjects_globally_unique: must equal issuers[0]'s, which shares user namespace "people"`}},
		{"two global namespaces", []IssuerConfig{iss("a", "", true), iss("b", "", true)},
			[]string{`issuers[1].subjects_globally_unique: only one user namespace may declare globally unique subjects (issuers[0], namespace "a", does)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, Config{Issuers: tc.issuers}.Validate(), tc.want)
		})
	}
}

func TestCacheMaxAge(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}, CacheMaxAge: 10 * time.Second})
	ctx := context.Background()
	tok := idp.MustMint(map[string]any{"sub": "a"}, devidp.WithExpiry(time.Hour))
	short := idp.MustMint(map[string]any{"sub": "a"}, devidp.WithExpiry(4*time.Second))
	verify := func(tok string) *Principal {
		t.Helper()
		p, err := v.VerifyToken(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		v.cache.Wait()
		return p
	}
	p1, ps := verify(tok), verify(short)
	clk.Advance(3 * time.Second)
	if verify(tok) != p1 || verify(short) != ps {
		t.Fatal("not served from the cache within the max age")
	}
	// The short token's entry ends at its exp, before the max age.
	clk.Advance(time.Second)
	if verify(short) == ps {
		t.Fatal("cached entry outlived the token's exp")
	}
	clk.Advance(5 * time.Second) // 9s: still within the max age
	if verify(tok) != p1 {
		t.Fatal("not served from the cache within the max age")
	}
	clk.Advance(time.Second) // 10s: the entry is too old
	p2 := verify(tok)
	if p2 == p1 {
		t.Fatal("cached entry served past cache_max_age")
	}
	if m := v.Metrics(); m.Hits != 3 || m.Misses != 4 {
		t.Fatalf("metrics = %+v", m)
	}

	d := Config{Issuers: []IssuerConfig{{Name: "i", Issuer: "https://i"}}}.withDefaults()
	if d.CacheMaxAge != DefaultCacheMaxAge || DefaultCacheMaxAge != 5*time.Minute {
		t.Fatalf("default cache_max_age = %v", d.CacheMaxAge)
	}
	for _, bad := range []time.Duration{-time.Second, 999 * time.Millisecond, time.Hour + time.Second} {
		checkErr(t, Config{Issuers: d.Issuers[:1:1], CacheMaxAge: bad}.Validate(), []string{"cache_max_age: "})
	}
	for _, ok := range []time.Duration{time.Second, time.Hour} {
		checkErr(t, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: "https://i"}}, CacheMaxAge: ok}.Validate(), nil)
	}
}

// checkErr asserts err contains every want substring, or is nil for nil want.
func checkErr(t *testing.T, err error, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("expected an error containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}
