package identity

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
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
	} {
		f.Add([]byte(s))
	}
	ic := Config{Issuers: []IssuerConfig{{Name: "n", Issuer: "https://i"}}}.withDefaults().Issuers[0]
	exp := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		claims := map[string]any{}
		if json.Unmarshal(data, &claims) != nil {
			return
		}
		p, err := buildPrincipal(ic, claims, exp)
		if err != nil {
			return
		}
		if strings.Count(p.UserKey, "|") != 2 || p.Subject == "" || p.UserID == "" {
			t.Fatalf("principal %+v", p)
		}
		if (p.Kind == KindAgentForUser) != (p.Actor != nil) {
			t.Fatalf("kind %v with actor %v", p.Kind, p.Actor)
		}
	})
}
