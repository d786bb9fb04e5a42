package exchange_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"github.com/mcpauthz/mcpauthz/credentials/exchange/ststest"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

const (
	testSecret   = "cs_TOPSECRET_exchange_42"
	testAudience = "https://mcp.docs.example/"
	testResource = "https://mcp.docs.example/api"
	oboAudience  = "api://docs-mcp"
)

// fixture is a devidp (issuer of user and agent tokens) and a strict STS
// trusting it, sharing one fixed clock.
type fixture struct {
	now     time.Time
	idp     *devidp.Issuer
	sts     *ststest.Server
	ecKey   *ecdsa.PrivateKey
	keyFile string
	secret  string // path of the client secret file
	user    string // user access token (sub alice)
	agent   string // agent token (sub agent-7)
}

var (
	fixtureOnce sync.Once
	sharedIdP   *devidp.Issuer
	sharedErr   error
)

// idp returns one devidp for the whole test binary (RSA key generation is slow).
func idp(t testing.TB) *devidp.Issuer {
	fixtureOnce.Do(func() {
		sharedIdP, sharedErr = devidp.New(devidp.Options{TokenTTL: time.Hour})
		if sharedErr == nil {
			_, sharedErr = sharedIdP.Start()
		}
	})
	if sharedErr != nil {
		t.Fatalf("devidp: %v", sharedErr)
	}
	return sharedIdP
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedIdP != nil {
		sharedIdP.Close()
	}
	os.Exit(code)
}

func newFixture(t testing.TB, mod func(*ststest.Options)) *fixture {
	t.Helper()
	f := &fixture{now: time.Now().Truncate(time.Second), idp: idp(t)}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f.ecKey = key
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f.keyFile = filepath.Join(dir, "key.pem")
	f.secret = filepath.Join(dir, "secret")
	must(t, os.WriteFile(f.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	must(t, os.WriteFile(f.secret, []byte(testSecret+"\n"), 0o600))

	opts := ststest.Options{
		Trusted: []ststest.Trust{{Issuer: f.idp.URL()}},
		Clients: []ststest.Client{
			{ID: "c-basic", Auth: ststest.AuthBasic, Secret: testSecret},
			{ID: "c-post", Auth: ststest.AuthPost, Secret: testSecret},
			{ID: "c-jwt", Auth: ststest.AuthPrivateKeyJWT, PublicKey: key.Public()},
			{ID: "c-public", Auth: ststest.AuthNone},
		},
		Audiences: []string{testAudience, testResource, oboAudience},
		Scopes:    []string{"docs:read", "docs:write", oboAudience + "/.default", oboAudience + "/Docs.Read"},
		Now:       f.clock,
	}
	if mod != nil {
		mod(&opts)
	}
	f.sts = ststest.New(t, opts)
	f.user = f.idp.MustMint(map[string]any{"sub": "alice", "aud": "mcpauthz", "scope": "docs:read"}, devidp.WithAlg("ES256"))
	f.agent = f.idp.MustMint(map[string]any{"sub": "agent-7", "aud": "mcpauthz"})
	return f
}

func (f *fixture) clock() time.Time { return f.now }

// config returns a valid config for client auth method auth.
func (f *fixture) config(auth string) exchange.Config {
	c := exchange.Config{TokenURL: f.sts.TokenURL(), ClientAuth: auth, Audience: testAudience}
	switch auth {
	case exchange.AuthClientSecretBasic, "":
		c.ClientID, c.ClientSecret = "c-basic", &secret.Ref{File: f.secret}
	case exchange.AuthClientSecretPost:
		c.ClientID, c.ClientSecret = "c-post", &secret.Ref{File: f.secret}
	case exchange.AuthPrivateKeyJWT:
		c.ClientID, c.PrivateKey, c.KeyID = "c-jwt", &secret.Ref{File: f.keyFile}, "k1"
	case exchange.AuthNone:
		c.ClientID = "c-public"
	}
	return c
}

// client builds a Client logging to the returned buffer (JSON, debug level).
func (f *fixture) client(t testing.TB, cfg exchange.Config) (*exchange.Client, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := exchange.New(context.Background(), cfg, exchange.Options{Now: f.clock, Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, &buf
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func asError(t testing.TB, err error) *exchange.Error {
	t.Helper()
	var e *exchange.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *exchange.Error", err, err)
	}
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
