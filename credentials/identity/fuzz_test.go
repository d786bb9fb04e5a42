package identity

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{
		"spiffe://prod.example.org/ns/default/sa/agent",
		"spiffe://prod.example.org",
		"spiffe://a/b/../c",
		"spiffe://A/b",
		"spiffe://td/a%2Fb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		td, err := parseSPIFFEID(id)
		if err != nil {
			if !strings.Contains(err.Error(), ReasonInvalidSPIFFEID) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !strings.HasPrefix(id, "spiffe://"+td+"/") || checkTrustDomain(td) != nil {
			t.Fatalf("accepted %q with trust domain %q", id, td)
		}
		if strings.ContainsAny(id[len("spiffe://"):], "?#%@:") {
			t.Fatalf("accepted suspicious id %q", id)
		}
	})
}

func FuzzBuildPrincipal(f *testing.F) {
	for _, s := range []string{
		`{"sub":"alice","org_id":"o","scope":"a b","aud":"x"}`,
		`{"sub":"svc","client_id":"svc"}`,
		`{"sub":"u","act":{"sub":"a","act":{"client_id":"c"}}}`,
		`{"sub":"u|x","org_id":"o%|","scp":["a",1]}`,
		`{"sub":1e300,"act":[]}`,
		`{"sub":"n/alice"}`,
		`{"sub":"spiffe://td/x"}`,
		`{"sub":"u","act":{"sub":"m/a","iss":"https://g"}}`,
		`{"sub":"u","act":{"sub":"a","iss":"https://evil"}}`,
		`{"sub":"u","org_id":9007199254740993,"uid":12345678901234567890123}`,
		`{"sub":"u","org_id":1.5}`,
		`{"sub":"u","azp":"agent","scp":"a b"}`,
		`{"sub":"x@clients","azp":"x","roles":{"admin":true}}`,
		`{"sub":"s","realm_access":{"roles":["r"]},"azp":"c","preferred_username":"service-account-c"}`,
		`{"sub":"o","oid":"o","idtyp":"app","scope":"a b"}`,
	} {
		f.Add([]byte(s))
	}
	// Issuers n and n2 share a namespace, m is another, g's subjects are
	// globally unique.
	cfg := Config{Issuers: []IssuerConfig{
		{Name: "n", Issuer: "https://i"},
		{Name: "n2", Issuer: "https://i2", UserNamespace: "n"},
		{Name: "m", Issuer: "https://m", Claims: ClaimsConfig{UserID: "uid", Roles: ClaimPath{"realm_access", "roles"}},
			Agent: AgentConfig{OnBehalfOfClientIDs: []string{"agent"}}},
		{Name: "g", Issuer: "https://g", SubjectsGloballyUnique: true},
	}}.withDefaults()
	ss := newSubjectSpace(cfg.Issuers)
	exp := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		qs := map[string]*Principal{}
		for _, ic := range cfg.Issuers {
			claims, err := DecodeClaims(data)
			if err != nil {
				return
			}
			claims["iss"] = ic.Issuer
			orig, _ := DecodeClaims(data) // buildPrincipal may rewrite roles
			p, err := buildPrincipal(ss, ic, claims, exp)
			if err != nil {
				var te *TokenError
				if !errors.As(err, &te) {
					t.Fatalf("error %v is not a *TokenError", err)
				}
				continue
			}
			// Key claims are exact: the claim's own string, or its integer digits.
			for _, kc := range []struct{ claim, got string }{{ic.Claims.UserID, p.UserID}, {ic.Claims.Org, p.Org}} {
				switch v := orig[kc.claim].(type) {
				case string:
					if v != "" && v != kc.got {
						t.Fatalf("%s %q read as %q", kc.claim, v, kc.got)
					}
				case json.Number:
					want, ok := exactInteger(v)
					if !ok || want != kc.got {
						t.Fatalf("%s %s read as %q", kc.claim, v, kc.got)
					}
				case nil:
				default:
					t.Fatalf("%s of type %T accepted", kc.claim, v)
				}
			}
			for _, sc := range p.Scopes {
				if !urlcheck.ScopeToken(sc) {
					t.Fatalf("scope %q accepted", sc)
				}
			}
			if rs, present := p.Claims["roles"]; present {
				if _, ok := stringArray(rs); !ok {
					t.Fatalf("claims.roles %#v accepted", rs)
				}
			}
			if strings.Count(p.UserKey, "|") != 2 || p.Subject == "" || p.UserID == "" || p.Issuer != ic.Issuer {
				t.Fatalf("principal %+v", p)
			}
			if (p.Kind == KindAgentForUser) != (p.Actor != nil) {
				t.Fatalf("kind %v with actor %v", p.Kind, p.Actor)
			}
			if p.Actor != nil && (p.Actor.Subject == "") != (p.Actor.QualifiedSubject == "") {
				t.Fatalf("actor %+v", p.Actor)
			}
			// The same claims from issuers in different namespaces never
			// give the same qualified subject; from one namespace they do.
			if prev, ok := qs[p.QualifiedSubject]; ok {
				if !(prev.Issuer == "https://i" && p.Issuer == "https://i2") {
					t.Fatalf("%s and %s share qualified subject %q", prev.Issuer, p.Issuer, p.QualifiedSubject)
				}
			}
			qs[p.QualifiedSubject] = p
			want := ic.UserNamespace + "/" + p.Subject
			if ic.SubjectsGloballyUnique {
				want = p.Subject
			}
			if p.QualifiedSubject != want {
				t.Fatalf("qualified subject %q, want %q", p.QualifiedSubject, want)
			}
		}
	})
}

// FuzzQualifiedSubject: subjects that two issuers accept have equal
// qualified subjects only when the issuers share a namespace and the subs
// are equal; no token's qualified subject equals a SPIFFE principal's.
func FuzzQualifiedSubject(f *testing.F) {
	for _, s := range [][2]string{
		{"alice", "alice"}, {"a/b", "b"}, {"ns/x", "x"}, {"spiffe://td/w", "w"}, {"SPIFFE://td/w", ""}, {"g/x", "x"},
	} {
		f.Add(s[0], s[1], uint8(0), uint8(1))
	}
	issuers := Config{Issuers: []IssuerConfig{
		{Name: "ns", Issuer: "https://a"},
		{Name: "ns-b", Issuer: "https://b", UserNamespace: "ns"},
		{Name: "a", Issuer: "https://c"},
		{Name: "g", Issuer: "https://g", SubjectsGloballyUnique: true},
		{Name: "g2", Issuer: "https://g2", UserNamespace: "g", SubjectsGloballyUnique: true},
	}}.withDefaults().Issuers
	ss := newSubjectSpace(issuers)
	v, err := NewVerifier(context.Background(), Config{Issuers: issuers, SPIFFE: SPIFFEConfig{TrustDomains: []string{"td"}}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	f.Fuzz(func(t *testing.T, sub1, sub2 string, i1, i2 uint8) {
		if sub1 == "" || sub2 == "" {
			return
		}
		a, b := issuers[int(i1)%len(issuers)], issuers[int(i2)%len(issuers)]
		q1, err1 := buildPrincipal(ss, a, map[string]any{"sub": sub1}, time.Time{})
		q2, err2 := buildPrincipal(ss, b, map[string]any{"sub": sub2}, time.Time{})
		for _, p := range []*Principal{q1, q2} {
			if p == nil {
				continue
			}
			if sp, err := v.FromSPIFFE(p.Subject); err == nil && sp.QualifiedSubject == p.QualifiedSubject {
				t.Fatalf("token subject %q collides with SPIFFE principal", p.Subject)
			}
		}
		if err1 != nil || err2 != nil {
			return
		}
		same := a.UserNamespace == b.UserNamespace && sub1 == sub2
		if (q1.QualifiedSubject == q2.QualifiedSubject) != same {
			t.Fatalf("(%s,%q)->%q vs (%s,%q)->%q", a.UserNamespace, sub1, q1.QualifiedSubject, b.UserNamespace, sub2, q2.QualifiedSubject)
		}
	})
}
