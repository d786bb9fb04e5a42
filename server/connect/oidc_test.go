package connect

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// testIssuer is a small but real OIDC issuer over HTTP: discovery, JWKS,
// an authorization endpoint that logs in whoever the test names, and a
// token endpoint that checks the client, the redirect URI and the PKCE S256
// verifier before returning an RS256-signed ID token. Faults make it lie in
// the ways the handler must catch.
type testIssuer struct {
	t      *testing.T
	srv    *httptest.Server
	key    *rsa.PrivateKey
	other  *rsa.PrivateKey // signs "bad signature" tokens
	client string
	secret string

	mu      sync.Mutex
	user    idUser
	fault   string
	codes   map[string]pendingCode
	issued  []string // every id_token and access token handed out
	tokenOK int
}

type idUser struct {
	Sub, Org, Name string
	// Extra claims of the ID token (roles, groups, ...).
	Extra map[string]any
}

type pendingCode struct {
	challenge, nonce, redirect string
	user                       idUser
}

// issuerKeys are generated once per test binary (RSA generation is slow
// under -race); each issuer still has its own listener and state.
var issuerKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	o, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k, o
})

func newTestIssuer(t *testing.T, clientID, clientSecret string) *testIssuer {
	t.Helper()
	k, o := issuerKeys()
	ti := &testIssuer{t: t, key: k, other: o, client: clientID, secret: clientSecret, codes: map[string]pendingCode{},
		user: idUser{Sub: "alice", Org: "acme", Name: "Alice Example"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", ti.discovery)
	mux.HandleFunc("GET /jwks", ti.jwks)
	mux.HandleFunc("GET /authorize", ti.authorize)
	mux.HandleFunc("POST /token", ti.token)
	ti.srv = httptest.NewServer(mux)
	t.Cleanup(ti.srv.Close)
	return ti
}

func (ti *testIssuer) URL() string { return ti.srv.URL }

func (ti *testIssuer) setUser(u idUser) { ti.mu.Lock(); ti.user = u; ti.mu.Unlock() }

// setFault: "" | wrong_aud | wrong_nonce | expired | bad_signature |
// wrong_iss | no_id_token | deny (authorize answers error=access_denied).
func (ti *testIssuer) setFault(f string) { ti.mu.Lock(); ti.fault = f; ti.mu.Unlock() }

func (ti *testIssuer) secrets() []string {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	return append([]string(nil), ti.issued...)
}

func (ti *testIssuer) discovery(w http.ResponseWriter, _ *http.Request) {
	_ = json.NewEncoder(w).Encode(map[string]any{
		"issuer":                                ti.URL(),
		"authorization_endpoint":                ti.URL() + "/authorize",
		"token_endpoint":                        ti.URL() + "/token",
		"jwks_uri":                              ti.URL() + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (ti *testIssuer) jwks(w http.ResponseWriter, _ *http.Request) {
	_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ti.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
}

func (ti *testIssuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if q.Get("client_id") != ti.client || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	redirect, _ := url.Parse(q.Get("redirect_uri"))
	v := url.Values{"state": {q.Get("state")}}
	if ti.fault == "deny" {
		v.Set("error", "access_denied")
		v.Set("error_description", "<b>call +1-555 now</b>")
	} else {
		code := "code-" + rand.Text()
		ti.codes[code] = pendingCode{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: q.Get("redirect_uri"), user: ti.user}
		v.Set("code", code)
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (ti *testIssuer) token(w http.ResponseWriter, r *http.Request) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	id, sec, ok := r.BasicAuth()
	if !ok {
		id, sec = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
	}
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if id != ti.client || sec != ti.secret {
		fail("invalid_client")
		return
	}
	pc, ok := ti.codes[r.PostFormValue("code")]
	delete(ti.codes, r.PostFormValue("code")) // single-use
	sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
	switch {
	case !ok || r.PostFormValue("grant_type") != "authorization_code":
		fail("invalid_grant")
		return
	case pc.redirect != r.PostFormValue("redirect_uri"):
		fail("invalid_grant")
		return
	case base64.RawURLEncoding.EncodeToString(sum[:]) != pc.challenge:
		fail("invalid_grant") // PKCE
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": ti.URL(), "sub": pc.user.Sub, "aud": ti.client, "nonce": pc.nonce, "org_id": pc.user.Org, "name": pc.user.Name,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range pc.user.Extra {
		claims[k] = v
	}
	signer := ti.key
	switch ti.fault {
	case "wrong_aud":
		claims["aud"] = "someone-else"
	case "wrong_nonce":
		claims["nonce"] = "not-the-nonce"
	case "expired":
		claims["iat"], claims["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	case "bad_signature":
		signer = ti.other
	case "wrong_iss":
		claims["iss"] = "https://evil.example"
	case "multi_aud":
		claims["aud"] = []string{ti.client, "other"}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: signer}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		ti.t.Error(err)
		return
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		ti.t.Error(err)
		return
	}
	idt, _ := jws.CompactSerialize()
	at := "at-" + rand.Text()
	ti.issued = append(ti.issued, idt, at)
	ti.tokenOK++
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 300}
	if ti.fault != "no_id_token" {
		resp["id_token"] = idt
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}
