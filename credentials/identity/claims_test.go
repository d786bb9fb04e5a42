package identity

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// claimPaths verifies the same claims as a signed JWT and as an opaque token
// judged by introspection, both over HTTP against devidp.
type claimPaths struct {
	jwt    func(map[string]any) string
	opaque func(map[string]any) string
	verify func(string) (*Principal, error)
}

func newClaimPaths(t *testing.T, mod func(*IssuerConfig)) *claimPaths {
	t.Helper()
	clk := newClock()
	jwtIdP := startIdP(t, clk)
	opIdP := introIdP(t, clk, "")
	jc := IssuerConfig{Name: "jwt", Issuer: jwtIdP.URL(), UserNamespace: "people"}
	oc := introConfig(t, opIdP, nil)
	oc.Agent = AgentConfig{}
	for _, ic := range []*IssuerConfig{&jc, &oc} {
		if mod != nil {
			mod(ic)
		}
	}
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{jc, oc}})
	return &claimPaths{
		jwt:    func(c map[string]any) string { return jwtIdP.MustMint(c) },
		opaque: func(c map[string]any) string { return opIdP.MustIssueOpaque(c) },
		verify: func(tok string) (*Principal, error) { return v.VerifyToken(context.Background(), tok) },
	}
}

// each runs f for the JWT and the introspection path.
func (c *claimPaths) each(t *testing.T, claims map[string]any, f func(t *testing.T, p *Principal, err error)) {
	t.Helper()
	for _, path := range []struct {
		name string
		mint func(map[string]any) string
	}{{"jwt", c.jwt}, {"introspection", c.opaque}} {
		t.Run(path.name, func(t *testing.T) {
			p, err := c.verify(path.mint(claims))
			f(t, p, err)
		})
	}
}

func detail(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Detail
	}
	return ""
}

func TestExactNumbers(t *testing.T) {
	cp := newClaimPaths(t, func(ic *IssuerConfig) { ic.Claims.UserID = "employee_id" })
	huge := new(big.Int).Lsh(big.NewInt(1), 70) // beyond int64 too
	huge.Add(huge, big.NewInt(1))
	tests := []struct {
		name            string
		userID, org     any
		wantID, wantOrg string
	}{
		{"2^53+1 both", json.Number("9007199254740993"), json.Number("9007199254740993"), "9007199254740993", "9007199254740993"},
		{"2^53", json.Number("9007199254740992"), "acme", "9007199254740992", "acme"},
		{"beyond int64", json.Number(huge.String()), json.Number("-12"), huge.String(), "-12"},
		{"minus zero is zero", json.Number("-0"), json.Number("0"), "0", "0"},
		{"strings as they are", "0042", "acme|x", "0042", "acme|x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := map[string]any{"sub": "s", "employee_id": tc.userID, "org_id": tc.org,
				"big": json.Number("123456789012345678901234567890.5"), "n": json.Number("9007199254740993")}
			cp.each(t, claims, func(t *testing.T, p *Principal, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if p.UserID != tc.wantID || p.Org != tc.wantOrg || p.UserKey != UserKey("people", tc.wantOrg, tc.wantID) {
					t.Fatalf("user id %q org %q key %q", p.UserID, p.Org, p.UserKey)
				}
				// Every number reaches policy with its digits.
				if p.Claims["n"] != json.Number("9007199254740993") || p.Claims["big"] != json.Number("123456789012345678901234567890.5") {
					t.Fatalf("claims n=%#v big=%#v", p.Claims["n"], p.Claims["big"])
				}
				if _, isNum := p.Claims["exp"].(json.Number); !isNum {
					t.Fatalf("exp decoded as %T", p.Claims["exp"])
				}
			})
		})
	}
	// Two people whose ids differ beyond float64 precision keep distinct keys.
	a, err := cp.verify(cp.jwt(map[string]any{"sub": "a", "employee_id": json.Number("9007199254740993")}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cp.verify(cp.jwt(map[string]any{"sub": "b", "employee_id": json.Number("9007199254740992")}))
	if err != nil {
		t.Fatal(err)
	}
	if a.UserKey == b.UserKey {
		t.Fatalf("user keys collide: %q", a.UserKey)
	}
}

func TestKeyClaimTypes(t *testing.T) {
	cp := newClaimPaths(t, func(ic *IssuerConfig) { ic.Claims.UserID = "uid" })
	bad := []struct {
		name string
		v    any
	}{
		{"fraction", json.Number("1.5")},
		{"integral fraction", json.Number("1.0")},
		{"exponent", json.Number("1e3")},
		{"bool", true},
		{"object", map[string]any{"id": "x"}},
		{"array", []any{"x"}},
	}
	for _, claim := range []struct{ name, field string }{
		{"uid", "uid (user id)"}, {"org_id", "org_id (org)"}, {"client_id", "client_id (client id)"}, {"azp", "azp (client id)"},
	} {
		for _, b := range bad {
			t.Run(claim.name+"/"+b.name, func(t *testing.T) {
				claims := map[string]any{"sub": "s", "uid": "u", claim.name: b.v}
				cp.each(t, claims, func(t *testing.T, p *Principal, err error) {
					if reason(err) != ReasonInvalidClaim || !strings.HasPrefix(detail(err), claim.field+":") {
						t.Fatalf("err = %v, want invalid_claim naming %s", err, claim.field)
					}
				})
			})
		}
	}
	// null is a JSON value of the wrong type too (devidp drops nil map
	// entries, so it is tested on the decoded claims directly).
	cfg := Config{Issuers: []IssuerConfig{{Name: "i", Issuer: "https://i", Claims: ClaimsConfig{UserID: "uid"}}}}
	for _, name := range []string{"uid", "org_id", "client_id"} {
		claims, err := DecodeClaims([]byte(`{"iss":"https://i","sub":"s","uid":"u","` + name + `":null}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := PrincipalFromClaims(cfg, claims); reason(err) != ReasonInvalidClaim || !strings.Contains(detail(err), name) {
			t.Fatalf("%s null: %v", name, err)
		}
	}
	cp.each(t, map[string]any{"sub": "s", "uid": "u", "act": map[string]any{"sub": json.Number("7.5")}}, func(t *testing.T, p *Principal, err error) {
		if reason(err) != ReasonInvalidClaim || !strings.HasPrefix(detail(err), "act.sub:") {
			t.Fatalf("act.sub: %v", err)
		}
	})
	cp.each(t, map[string]any{"sub": "s", "uid": "u", "act": map[string]any{"sub": json.Number("9007199254740993")}}, func(t *testing.T, p *Principal, err error) {
		if err != nil || p.Actor.Subject != "9007199254740993" {
			t.Fatalf("integer act.sub: %+v %v", p, err)
		}
	})
}

func TestScopeSeparators(t *testing.T) {
	cp := newClaimPaths(t, nil)
	refused := []string{
		"a\u00a0b", // NBSP
		"a\u3000b", // ideographic space
		"a\u2003b", // em space
		"a\tb", "a\nb", "a\x00b", "a\x7fb",
		"a  b", " a", "a ",
		`a"b`, `a\b`, "caf\u00e9",
	}
	for _, s := range refused {
		t.Run("refused "+strings.ToValidUTF8(s, "?"), func(t *testing.T) {
			cp.each(t, map[string]any{"sub": "s", "scope": s}, func(t *testing.T, p *Principal, err error) {
				if reason(err) != ReasonInvalidClaim || !strings.HasPrefix(detail(err), "scope:") {
					t.Fatalf("scope %q: %v", s, err)
				}
			})
		})
	}
	accepted := map[string][]string{"": nil, "a": {"a"}, "docs:read docs:write": {"docs:read", "docs:write"}, "https://x/y!#$": {"https://x/y!#$"}}
	for s, want := range accepted {
		t.Run("accepted "+s, func(t *testing.T) {
			cp.each(t, map[string]any{"sub": "s", "scope": s}, func(t *testing.T, p *Principal, err error) {
				if err != nil || !reflect.DeepEqual(p.Scopes, want) {
					t.Fatalf("scope %q: %v %v", s, p, err)
				}
			})
		})
	}
	// scp (Entra: a string; Okta: an array), JWT path.
	for _, tc := range []struct {
		name string
		scp  any
		want []string
		ok   bool
	}{
		{"scp string", "User.Read Mail.Send", []string{"User.Read", "Mail.Send"}, true},
		{"scp array", []any{"openid", "docs:read"}, []string{"openid", "docs:read"}, true},
		{"scp empty array", []any{}, []string{}, true},
		{"scp string with NBSP", "a\u00a0b", nil, false},
		{"scp array element with a space", []any{"a b"}, nil, false},
		{"scp array element a number", []any{"a", json.Number("1")}, nil, false},
		{"scp object", map[string]any{"a": true}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := map[string]any{"sub": "s", "scp": tc.scp}
			p, err := cp.verify(cp.jwt(claims))
			if !tc.ok {
				if reason(err) != ReasonInvalidClaim || !strings.HasPrefix(detail(err), "scp:") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(p.Scopes, tc.want) {
				t.Fatalf("scopes %#v err %v, want %#v", p.Scopes, err, tc.want)
			}
		})
	}
	// The scope claim wins over scp; as an array (JWT) it is read like scp.
	p, err := cp.verify(cp.jwt(map[string]any{"sub": "s", "scope": []any{"a", "b"}, "scp": "c"}))
	if err != nil || strings.Join(p.Scopes, ",") != "a,b" {
		t.Fatalf("scope array: %v %v", p, err)
	}
}

func TestRolesClaim(t *testing.T) {
	cp := newClaimPaths(t, nil)
	for _, tc := range []struct {
		name  string
		roles any
		want  []string
		ok    bool
	}{
		{"array of strings", []any{"viewer", "editor"}, []string{"viewer", "editor"}, true},
		{"empty array", []any{}, []string{}, true},
		{"object", map[string]any{"admin": true}, nil, false},
		{"object of names", map[string]any{"0": "admin"}, nil, false},
		{"string", "admin", nil, false},
		{"mixed array", []any{"viewer", json.Number("1")}, nil, false},
		{"nested array", []any{[]any{"admin"}}, nil, false},
		{"array of objects", []any{map[string]any{"name": "admin"}}, nil, false},
		{"bool", true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp.each(t, map[string]any{"sub": "s", "roles": tc.roles}, func(t *testing.T, p *Principal, err error) {
				if !tc.ok {
					if reason(err) != ReasonInvalidClaim || !strings.HasPrefix(detail(err), "roles (roles):") {
						t.Fatalf("err = %v", err)
					}
					return
				}
				if err != nil || !reflect.DeepEqual(p.Roles, tc.want) {
					t.Fatalf("roles %#v err %v", p.Roles, err)
				}
			})
		})
	}
	cp.each(t, map[string]any{"sub": "s"}, func(t *testing.T, p *Principal, err error) {
		if err != nil || p.Roles != nil {
			t.Fatalf("no roles: %v %v", p, err)
		}
	})
}

func TestRolesPath(t *testing.T) {
	cp := newClaimPaths(t, func(ic *IssuerConfig) { ic.Claims.Roles = ClaimPath{"realm_access", "roles"} })
	cp.each(t, map[string]any{"sub": "s", "realm_access": map[string]any{"roles": []any{"editor", "offline_access"}}, "roles": []any{"admin"}},
		func(t *testing.T, p *Principal, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(p.Roles, ",") != "editor,offline_access" || !reflect.DeepEqual(p.Claims["roles"], []any{"editor", "offline_access"}) {
				t.Fatalf("roles %v claims.roles %#v", p.Roles, p.Claims["roles"])
			}
		})
	// Without realm roles, a top-level roles claim is not taken for them.
	cp.each(t, map[string]any{"sub": "s", "roles": []any{"admin"}}, func(t *testing.T, p *Principal, err error) {
		if err != nil || p.Roles != nil {
			t.Fatalf("roles %v err %v", p.Roles, err)
		}
		if _, present := p.Claims["roles"]; present {
			t.Fatalf("claims.roles = %#v, want absent", p.Claims["roles"])
		}
	})
	for name, ra := range map[string]any{
		"realm_access a string": "admin",
		"realm_access an array": []any{"admin"},
		"roles an object":       map[string]any{"roles": map[string]any{"admin": true}},
		"roles a string":        map[string]any{"roles": "admin"},
	} {
		t.Run(name, func(t *testing.T) {
			cp.each(t, map[string]any{"sub": "s", "realm_access": ra}, func(t *testing.T, p *Principal, err error) {
				if reason(err) != ReasonInvalidClaim || !strings.HasPrefix(detail(err), "roles (realm_access.roles):") {
					t.Fatalf("err = %v", err)
				}
			})
		})
	}
	// A claim name with dots (Auth0 namespaced claims), as a list.
	cp2 := newClaimPaths(t, func(ic *IssuerConfig) { ic.Claims.Roles = ClaimPath{"https://example.com/roles"} })
	cp2.each(t, map[string]any{"sub": "s", "https://example.com/roles": []any{"viewer"}}, func(t *testing.T, p *Principal, err error) {
		if err != nil || strings.Join(p.Roles, ",") != "viewer" || !reflect.DeepEqual(p.Claims["roles"], []any{"viewer"}) {
			t.Fatalf("roles %v err %v", p.Roles, err)
		}
	})
}

func TestClaimPathYAML(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want ClaimPath
		err  string
	}{
		{"roles: realm_access.roles", ClaimPath{"realm_access", "roles"}, ""},
		{"roles: roles", ClaimPath{"roles"}, ""},
		{`roles: ["https://example.com/roles"]`, ClaimPath{"https://example.com/roles"}, ""},
		{"roles: [resource_access, my-app, roles]", ClaimPath{"resource_access", "my-app", "roles"}, ""},
		{"roles: a..b", nil, "non-empty"},
		{`roles: ""`, nil, "empty claim path"},
		{"roles: []", nil, "empty claim path"},
		{"roles: 3", nil, "claim path must be a string"},
		{"roles: {a: b}", nil, "claim path must be a string"},
		{"roles: [a, [b]]", nil, "list elements must be strings"},
	} {
		var c ClaimsConfig
		err := yaml.Unmarshal([]byte(tc.doc), &c)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%s: err = %v, want %q", tc.doc, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(c.Roles, tc.want) {
			t.Fatalf("%s: %#v %v", tc.doc, c.Roles, err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back ClaimsConfig
		if err := yaml.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back.Roles, tc.want) {
			t.Fatalf("round trip %s -> %s: %#v %v", tc.doc, out, back.Roles, err)
		}
	}
	if err := (Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Claims: ClaimsConfig{Roles: ClaimPath{"a", ""}}}}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "issuers[0].claims.roles") {
		t.Fatalf("Validate = %v", err)
	}
}

func TestDecodeClaims(t *testing.T) {
	m, err := DecodeClaims([]byte(` {"a": 9007199254740993, "b": [1.50, {"c": -0}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": json.Number("9007199254740993"), "b": []any{json.Number("1.50"), map[string]any{"c": json.Number("-0")}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %#v", m)
	}
	for _, bad := range []string{``, `[]`, `null`, `"x"`, `{"a":1} {}`, `{"a":1}x`, `{"a":}`} {
		if _, err := DecodeClaims([]byte(bad)); err == nil {
			t.Fatalf("DecodeClaims(%q) accepted", bad)
		}
	}
}

func TestPrincipalFromClaimsNumbers(t *testing.T) {
	cfg := Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Claims: ClaimsConfig{UserID: "uid"}}}}
	for _, tc := range []struct {
		name string
		uid  any
		want string
		ok   bool
	}{
		{"float64 small integer", float64(42), "42", true},
		{"float64 2^53", float64(1 << 53), "9007199254740992", true},
		{"float64 beyond 2^53 may have lost digits", float64(1<<53 + 2), "", false},
		{"float64 fraction", 1.5, "", false},
		{"int", 7, "7", true},
		{"json.Number huge", json.Number("123456789012345678901234567890"), "123456789012345678901234567890", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PrincipalFromClaims(cfg, map[string]any{"iss": "https://i", "sub": "s", "uid": tc.uid, "scp": []string{"a"}})
			if !tc.ok {
				if reason(err) != ReasonInvalidClaim {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || p.UserID != tc.want || strings.Join(p.Scopes, ",") != "a" {
				t.Fatalf("%+v %v", p, err)
			}
		})
	}
}
