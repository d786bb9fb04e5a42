package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

// connWorld is a config file whose SQLite store holds real connections,
// made through a real provider (internal/oauthtest).
type connWorld struct {
	dir, cfg string
	provider *oauthtest.Provider
	provURL  string
	tokens   []string // every access token stored, to prove none is printed
}

const (
	cliOrg     = "acme"
	aliceKey   = "dev|acme|alice"
	bobKey     = "dev|acme|bob"
	cliPublic  = "http://127.0.0.1:9"
	cliSecret  = "cli-provider-SECRET-31"
	cliStoreK1 = "bG9uZy1lbm91Z2gtdG8tYmUtYS0zMi1ieXRlLWtleSE="
	cliStoreK2 = "c2Vjb25kLWtleS1mb3Itcm90YXRpb24tdGVzdHMtMzI="
)

// writeConfig writes the config with the given store keys ("k1", "k2"),
// the first one primary.
func (w *connWorld) writeConfig(t *testing.T, keys ...string) {
	t.Helper()
	var ks []string
	for _, k := range keys {
		ks = append(ks, fmt.Sprintf("{id: %s, secret: {file: %s}}", k, filepath.Join(w.dir, k)))
	}
	bundle, err := filepath.Abs("../../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	provider := fmt.Sprintf("provider: {issuer: %s, client_id: cli-client, client_secret: {file: %s}}", w.provURL, filepath.Join(w.dir, "provider-secret"))
	doc := fmt.Sprintf(`version: 1
identity:
  issuers: [{name: dev, issuer: https://idp.example.com}]
policy:
  bundles: [{path: %s}]
store:
  driver: sqlite
  path: %s
  encryption:
    keys: [%s]
connections:
  public_url: %s
connect:
  login: {issuer: dev, client_id: connect, client_secret: {file: %s}}
servers:
  - id: tracker
    resource: https://mcp.example.com/tracker/mcp
    credential:
      mode: individual
      individual: {%s}
  - id: wiki
    resource: https://mcp.example.com/wiki/mcp
    credential:
      mode: service_account
      service_account: {oauth: {%s}}
`, bundle, filepath.Join(w.dir, "state.db"), strings.Join(ks, ", "), cliPublic, filepath.Join(w.dir, "provider-secret"), provider, provider)
	if err := os.WriteFile(w.cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// manager opens the config's store with a manager that knows both servers.
func (w *connWorld) manager(t *testing.T, keys ...string) (*connections.Manager, func()) {
	t.Helper()
	ctx := context.Background()
	var kc []store.KeyConfig
	for _, k := range keys {
		kc = append(kc, store.KeyConfig{ID: k, Secret: secret.Ref{File: filepath.Join(w.dir, k)}})
	}
	st, ring, err := store.Open(ctx, store.Config{Driver: store.DriverSQLite, Path: filepath.Join(w.dir, "state.db"),
		Encryption: store.Encryption{Keys: kc}}, store.Options{Logger: slog.New(slog.DiscardHandler), PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := connections.New(ctx, connections.Config{PublicURL: cliPublic}, connections.Options{Store: st, Cipher: ring})
	if err != nil {
		t.Fatal(err)
	}
	p := connections.ProviderConfig{Issuer: w.provURL, ClientID: "cli-client", ClientSecret: &secret.Ref{File: filepath.Join(w.dir, "provider-secret")}}
	if err := m.Register("tracker", connections.ModeIndividual, p); err != nil {
		t.Fatal(err)
	}
	if err := m.Register("wiki", connections.ModeServiceAccount, p); err != nil {
		t.Fatal(err)
	}
	return m, func() { m.Wait(); _ = st.Close() }
}

// connect runs the connect flow for key, signing in at the provider as user.
func (w *connWorld) connect(t *testing.T, m *connections.Manager, key connections.Key, user string) {
	t.Helper()
	ctx := context.Background()
	u, err := m.StartConnect(ctx, key, "", "/connect/")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := oauthtest.Authorize(ctx, u, user, user)
	if err != nil {
		t.Fatal(err)
	}
	q := cb.Query()
	if _, _, err := m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", key); err != nil {
		t.Fatal(err)
	}
	tok, err := m.Token(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w.tokens = append(w.tokens, tok.AccessToken)
}

// newConnWorld: alice and bob connected to tracker, the organization's
// service account to wiki, and a pending flow (a link and a flow sealed
// in the store too).
func newConnWorld(t *testing.T) *connWorld {
	t.Helper()
	w := &connWorld{dir: t.TempDir()}
	w.cfg = filepath.Join(w.dir, "mcpauthz.yaml")
	w.provider = oauthtest.New(oauthtest.Options{Clients: map[string]string{"cli-client": cliSecret},
		RedirectURIs: map[string][]string{"cli-client": {cliPublic + "/connect/callback"}}, Users: map[string]string{"alice": "alice", "bob": "bob", "carol": "carol"}})
	var err error
	if w.provURL, err = w.provider.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.provider.Close)
	for name, v := range map[string]string{"k1": cliStoreK1, "k2": cliStoreK2, "provider-secret": cliSecret} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.writeConfig(t, "k1")
	m, closeStore := w.manager(t, "k1")
	defer closeStore()
	w.connect(t, m, connections.Key{Org: cliOrg, UserKey: aliceKey, Server: "tracker"}, "alice")
	w.connect(t, m, connections.Key{Org: cliOrg, UserKey: bobKey, Server: "tracker"}, "bob")
	w.connect(t, m, connections.Key{Org: cliOrg, Server: "wiki"}, "carol")
	if _, err := m.Link(context.Background(), connections.Key{Org: cliOrg, UserKey: "dev|acme|carol", Server: "tracker"}); err != nil {
		t.Fatal(err)
	}
	return w
}

// noSecrets fails when out shows a stored token or a secret.
func (w *connWorld) noSecrets(t *testing.T, out string) {
	t.Helper()
	for _, s := range append([]string{cliSecret, cliStoreK1, cliStoreK2}, w.tokens...) {
		if s != "" && strings.Contains(out, s) {
			t.Fatalf("the output shows a token or secret:\n%s", out)
		}
	}
}

func TestConnectionsList(t *testing.T) {
	w := newConnWorld(t)
	code, out, errOut := runCmd(t, "connections", "list", "--config", w.cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	w.noSecrets(t, out+errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "SERVER") {
		t.Fatalf("want a header and 3 rows (alice, bob, the wiki's service account; carol's link makes no record):\n%s", out)
	}
	for _, want := range [][]string{
		{"tracker", "acme", aliceKey, "individual", "AUTHORIZED", "-"},
		{"tracker", "acme", bobKey, "individual", "AUTHORIZED", "-"},
		{"wiki", "acme", "(organization)", "service_account", "AUTHORIZED", "-"},
	} {
		found := false
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) >= len(want) && strings.Join(f[:len(want)], " ") == strings.Join(want, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %v in:\n%s", want, out)
		}
	}

	for _, tc := range []struct {
		args []string
		want []string // user keys, in order ("" = service account)
	}{
		{[]string{"--user", bobKey}, []string{bobKey}},
		{[]string{"--service-accounts"}, []string{""}},
		{[]string{"--server", "wiki"}, []string{""}},
		{[]string{"--status", "authorized", "--server", "tracker"}, []string{aliceKey, bobKey}},
		{[]string{"--org", "other"}, nil},
	} {
		args := append([]string{"connections", "list", "--config", w.cfg, "--format", "json"}, tc.args...)
		code, out, errOut := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		w.noSecrets(t, out)
		var got []connectionView
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		var keys []string
		for _, c := range got {
			keys = append(keys, c.UserKey)
			if c.Status == "AUTHORIZED" && (c.ConnectedAt == "" || c.AccessExpiresAt == "" || c.Generation == 0) {
				t.Errorf("%v: times or generation missing: %+v", tc.args, c)
			}
		}
		if strings.Join(keys, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%v: got %q, want %q", tc.args, keys, tc.want)
		}
	}
	if code, out, _ := runCmd(t, "connections", "list", "--config", w.cfg, "--org", "other"); code != 0 || out != "No connections.\n" {
		t.Errorf("empty list: exit %d %q", code, out)
	}
}

func TestConnectionsRevoke(t *testing.T) {
	w := newConnWorld(t)
	ctx := context.Background()
	revokes := w.provider.Requests("/revoke")
	code, out, errOut := runCmd(t, "connections", "revoke", "--config", w.cfg, "--org", cliOrg, "--user", aliceKey, "--server", "tracker")
	if code != 0 || out != "tracker: user "+aliceKey+" in acme: revoked (was AUTHORIZED)\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	w.noSecrets(t, out+errOut)
	// The audit line names the actor; the provider heard of it.
	if !strings.Contains(errOut, `"actor":"admin:cli"`) || !strings.Contains(errOut, `"reason":"admin_revoked"`) {
		t.Errorf("no audit line with actor admin:cli: %s", errOut)
	}
	if w.provider.Requests("/revoke") != revokes+1 {
		t.Errorf("the provider's revocation endpoint was called %d times", w.provider.Requests("/revoke")-revokes)
	}

	m, closeStore := w.manager(t, "k1")
	defer closeStore()
	alice := connections.Key{Org: cliOrg, UserKey: aliceKey, Server: "tracker"}
	var na *connections.NeedsAuthorizationError
	if _, err := m.Token(ctx, alice); !errors.As(err, &na) || na.Connection.Status != connections.StatusRevoked {
		t.Fatalf("alice's token after the CLI revoked it: %v", err)
	}
	hist, err := m.History(ctx, cliOrg, aliceKey, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range hist {
		found = found || (e.Type == "revoked" && e.Actor == cliActor && e.Reason == "admin_revoked" && e.To == connections.StatusRevoked)
	}
	if !found {
		t.Fatalf("alice's history has no revocation by admin:cli: %+v", hist)
	}
	if _, err := m.Token(ctx, connections.Key{Org: cliOrg, UserKey: bobKey, Server: "tracker"}); err != nil {
		t.Fatalf("bob's connection was touched: %v", err)
	}

	// Again: already revoked, still exit 0.
	if code, out, _ := runCmd(t, "connections", "revoke", "--config", w.cfg, "--org", cliOrg, "--user", aliceKey); code != 0 || !strings.Contains(out, "already revoked") {
		t.Errorf("second revoke: exit %d %q", code, out)
	}
	// The organization's service account, with a reason.
	code, out, _ = runCmd(t, "connections", "revoke", "--config", w.cfg, "--org", cliOrg, "--service-account", "--reason", "offboarding")
	if code != 0 || out != "wiki: the organization's service account in acme: revoked (was AUTHORIZED)\n" {
		t.Fatalf("service account revoke: exit %d %q", code, out)
	}
	if c, err := m.Get(ctx, connections.Key{Org: cliOrg, Server: "wiki"}); err != nil || c.Status != connections.StatusRevoked || c.Reason != "offboarding" {
		t.Fatalf("wiki after revoke: %+v %v", c, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", aliceKey}, "--org is required"},
		{[]string{"--org", cliOrg}, "exactly one of --user KEY and --service-account"},
		{[]string{"--org", cliOrg, "--user", aliceKey, "--service-account"}, "exactly one of"},
		{[]string{"--org", cliOrg, "--user", "dev|acme|nobody"}, "no connection of user dev|acme|nobody in organization acme for any server"},
		{[]string{"--org", cliOrg, "--user", bobKey, "--server", "wiki"}, "no connection of user " + bobKey + " in organization acme for server wiki"},
		{[]string{"--org", cliOrg, "--user", bobKey, "--reason", "Bad Reason"}, "--reason"},
	} {
		args := append([]string{"connections", "revoke", "--config", w.cfg}, tc.args...)
		code, _, errOut := runCmd(t, args...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q (want %q)", tc.args, code, errOut, tc.want)
		}
	}
}

func TestConnectionsRotateKey(t *testing.T) {
	w := newConnWorld(t)
	ctx := context.Background()
	m, closeStore := w.manager(t, "k1")
	bob := connections.Key{Org: cliOrg, UserKey: bobKey, Server: "tracker"}
	before, err := m.Token(ctx, bob)
	closeStore()
	if err != nil {
		t.Fatal(err)
	}

	// Add k2 as primary, keep k1 to read; rotate.
	w.writeConfig(t, "k2", "k1")
	code, out, errOut := runCmd(t, "connections", "rotate-key", "--config", w.cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// 3 connection records, their 3 used flows (kept an hour), carol's
	// link (by id and by key).
	if !strings.HasPrefix(out, "re-encrypted 8 connection records and 0 issuer keys under key k2") {
		t.Fatalf("rotate-key said %q", out)
	}
	w.noSecrets(t, out+errOut)
	if code, out, _ := runCmd(t, "connections", "rotate-key", "--config", w.cfg); code != 0 || !strings.HasPrefix(out, "re-encrypted 0 connection records") {
		t.Fatalf("second rotate-key: exit %d %q", code, out)
	}

	// k1 is no longer needed: k2 alone reads every token.
	w.writeConfig(t, "k2")
	m2, closeStore2 := w.manager(t, "k2")
	defer closeStore2()
	after, err := m2.Token(ctx, bob)
	if err != nil || after.AccessToken != before.AccessToken {
		t.Fatalf("bob's token under k2 alone: %v (same: %v)", err, after.AccessToken == before.AccessToken)
	}
	if _, err := m2.Token(ctx, connections.Key{Org: cliOrg, Server: "wiki"}); err != nil {
		t.Fatalf("the service account's token under k2 alone: %v", err)
	}
	if code, out, errOut := runCmd(t, "connections", "list", "--config", w.cfg, "--status", "AUTHORIZED"); code != 0 || strings.Count(out, "AUTHORIZED") != 3 {
		t.Fatalf("list under k2: exit %d\n%s%s", code, out, errOut)
	}
	// And k1 alone no longer opens the store.
	w.writeConfig(t, "k1")
	if code, _, errOut := runCmd(t, "connections", "list", "--config", w.cfg); code != 1 || !strings.Contains(errOut, "cannot read this database") {
		t.Fatalf("k1 alone after rotation: exit %d %s", code, errOut)
	}
}

func TestConnectionsUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"connections"}, 2, "mcpauthz connections rotate-key"},
		{[]string{"connections", "nope"}, 2, `unknown subcommand "nope"`},
		{[]string{"connections", "list", "extra"}, 2, "Usage:"},
		{[]string{"connections", "list"}, 1, "--config is required"},
		{[]string{"connections", "list", "--config", "x.yaml", "--format", "xml"}, 1, `--format: "xml"`},
		{[]string{"connections", "list", "--config", "x.yaml", "--status", "GOOD"}, 1, `--status: "GOOD"`},
		{[]string{"connections", "list", "--config", "x.yaml", "--user", "u", "--service-accounts"}, 1, "exclude each other"},
	} {
		code, _, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
	}
	for _, sub := range []string{"list", "revoke", "rotate-key"} {
		code, out, errOut := runCmd(t, "connections", sub, "--help")
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage:\n  mcpauthz connections "+sub) || !strings.Contains(out, "-config") {
			t.Errorf("%s --help: exit %d\n%s%s", sub, code, out, errOut)
		}
	}
	// A memory store has nothing to list from outside the serving process.
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	bundle, _ := filepath.Abs("../../bundles/rbac")
	doc := fmt.Sprintf("version: 1\nidentity: {issuers: [{name: dev, issuer: https://idp.example.com}]}\npolicy: {bundles: [{path: %s}]}\n"+
		"servers: [{id: docs, resource: https://mcp.example.com/docs/mcp, credential: {mode: public}}]\n", bundle)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd(t, "connections", "list", "--config", cfg); code != 1 || !strings.Contains(errOut, `store.driver is "memory"`) {
		t.Errorf("memory store: exit %d %s", code, errOut)
	}
}
