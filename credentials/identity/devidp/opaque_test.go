package devidp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// introspect posts form to /introspect, with basic credentials when user is
// not empty, and returns the status and decoded body.
func introspect(t *testing.T, base string, form url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/introspect", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestIntrospection(t *testing.T) {
	clk := &testClock{t: time.Unix(1_800_000_000, 0)}
	idp, err := New(Options{Now: clk.Now, OpaqueTokenPrefix: "devat_",
		IntrospectionClients: map[string]string{"rs": "s3cr:et/%", "public": ""}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()

	tok := idp.MustIssueOpaque(map[string]any{"sub": "alice", "aud": "https://mcp.example/mcp", "scope": "a b"}, WithExpiry(time.Minute))
	if !strings.HasPrefix(tok, "devat_") || len(tok) != len("devat_")+43 {
		t.Fatalf("token %q", tok)
	}
	if other := idp.MustIssueOpaque(nil); other == tok {
		t.Fatal("tokens repeat")
	}
	var disc map[string]any
	getJSON(t, u+"/.well-known/openid-configuration", &disc)
	if disc["introspection_endpoint"] != u+"/introspect" {
		t.Fatalf("discovery = %v", disc)
	}

	active := func(form url.Values, user, pass string) map[string]any {
		t.Helper()
		st, body := introspect(t, u, form, user, pass)
		if st != http.StatusOK {
			t.Fatalf("status %d: %v", st, body)
		}
		return body
	}
	body := active(url.Values{"token": {tok}}, "rs", "s3cr:et/%")
	if body["active"] != true || body["sub"] != "alice" || body["iss"] != u || body["scope"] != "a b" ||
		body["token_type"] != "Bearer" || body["exp"].(float64) != float64(clk.Now().Add(time.Minute).Unix()) {
		t.Fatalf("basic: %v", body)
	}
	body = active(url.Values{"token": {tok}, "client_id": {"rs"}, "client_secret": {"s3cr:et/%"}}, "", "")
	if body["active"] != true {
		t.Fatalf("post: %v", body)
	}
	if body = active(url.Values{"token": {tok}, "client_id": {"public"}}, "", ""); body["active"] != true {
		t.Fatalf("public client: %v", body)
	}
	if body = active(url.Values{"token": {"devat_unknown"}}, "rs", "s3cr:et/%"); len(body) != 1 || body["active"] != false {
		t.Fatalf("unknown token: %v", body)
	}

	refused := []struct {
		name       string
		form       url.Values
		user, pass string
		status     int
	}{
		{"no client", url.Values{"token": {tok}}, "", "", http.StatusUnauthorized},
		{"wrong secret", url.Values{"token": {tok}}, "rs", "nope", http.StatusUnauthorized},
		{"unknown client", url.Values{"token": {tok}}, "x", "s3cr:et/%", http.StatusUnauthorized},
		{"two methods", url.Values{"token": {tok}, "client_secret": {"s3cr:et/%"}}, "rs", "s3cr:et/%", http.StatusUnauthorized},
		{"public client with a secret", url.Values{"token": {tok}, "client_id": {"public"}, "client_secret": {"x"}}, "", "", http.StatusUnauthorized},
		{"no token", url.Values{}, "rs", "s3cr:et/%", http.StatusBadRequest},
		{"repeated token", url.Values{"token": {tok, tok}}, "rs", "s3cr:et/%", http.StatusBadRequest},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			st, body := introspect(t, u, tc.form, tc.user, tc.pass)
			if st != tc.status || body["active"] != nil {
				t.Fatalf("status %d body %v, want %d", st, body, tc.status)
			}
		})
	}

	// Revoked and expired tokens are inactive.
	short := idp.MustIssueOpaque(map[string]any{"sub": "bob"}, WithExpiry(30*time.Second))
	if body := active(url.Values{"token": {short}}, "rs", "s3cr:et/%"); body["active"] != true {
		t.Fatalf("short: %v", body)
	}
	clk.Advance(30 * time.Second)
	if body := active(url.Values{"token": {short}}, "rs", "s3cr:et/%"); body["active"] != false {
		t.Fatalf("expired: %v", body)
	}
	if !idp.Revoke(tok) || idp.Revoke(tok) {
		t.Fatal("Revoke reports wrongly")
	}
	if body := active(url.Values{"token": {tok}}, "rs", "s3cr:et/%"); body["active"] != false {
		t.Fatalf("revoked: %v", body)
	}
	if n := idp.IntrospectionRequests(); n != 7+len(refused) {
		t.Fatalf("IntrospectionRequests = %d", n)
	}
}

// TestRestart: Close takes the issuer down (connections refused) and Start
// brings it back at the same URL with its keys and tokens.
func TestRestart(t *testing.T) {
	idp, err := New(Options{IntrospectionClients: map[string]string{"rs": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	if _, err := idp.Start(); err == nil {
		t.Fatal("second Start while running succeeded")
	}
	tok := idp.MustIssueOpaque(map[string]any{"sub": "a"})
	kid := idp.Kid("RS256")
	idp.Close()
	if resp, err := http.Get(u + "/jwks"); err == nil {
		resp.Body.Close()
		t.Fatal("served after Close")
	}
	u2, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	if u2 != u || idp.Kid("RS256") != kid {
		t.Fatalf("restarted at %q (was %q)", u2, u)
	}
	if st, body := introspect(t, u, url.Values{"token": {tok}}, "rs", "pw"); st != 200 || body["active"] != true {
		t.Fatalf("after restart: %d %v", st, body)
	}
}
