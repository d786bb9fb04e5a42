package identity

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"go.yaml.in/yaml/v3"
)

// loadPayload reads a token payload from testdata/tokens, as the IdP
// documents it. Times are dropped so devidp sets them from the test clock.
func loadPayload(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tokens", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeClaims(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// mintPayload signs payload as issued by idp (iss and times replaced).
func mintPayload(idp *devidp.Issuer, payload map[string]any) string {
	c := make(map[string]any, len(payload))
	for k, v := range payload {
		c[k] = v
	}
	for _, k := range []string{"iss", "exp", "iat", "nbf"} {
		delete(c, k)
	}
	// The IdPs above type their access tokens "JWT", not at+jwt.
	return idp.MustMint(c, devidp.WithHeader("typ", "JWT"))
}

type wantPrincipal struct {
	kind      Kind
	rule      string
	actor     *Actor // Issuer "iss" stands for the issuer's URL; QualifiedSubject not compared
	subject   string
	userID    string
	org       string
	clientID  string
	scopes    []string
	roles     []string
	rolesInCl bool // claims.roles is the roles (a configured roles path)
}

func (w wantPrincipal) check(t *testing.T, p *Principal, iss string) {
	t.Helper()
	if p.Kind != w.kind || p.AgentRule != w.rule {
		t.Fatalf("kind %s by %q, want %s by %q", p.Kind, p.AgentRule, w.kind, w.rule)
	}
	if p.Subject != w.subject || p.UserID != w.userID || p.Org != w.org || p.ClientID != w.clientID {
		t.Fatalf("subject %q user %q org %q client %q, want %q %q %q %q", p.Subject, p.UserID, p.Org, p.ClientID, w.subject, w.userID, w.org, w.clientID)
	}
	if !reflect.DeepEqual(p.Scopes, w.scopes) || !reflect.DeepEqual(p.Roles, w.roles) {
		t.Fatalf("scopes %#v roles %#v, want %#v %#v", p.Scopes, p.Roles, w.scopes, w.roles)
	}
	if w.rolesInCl {
		want := make([]any, len(w.roles))
		for i, r := range w.roles {
			want[i] = r
		}
		if !reflect.DeepEqual(p.Claims["roles"], want) {
			t.Fatalf("claims.roles = %#v", p.Claims["roles"])
		}
	}
	switch {
	case w.actor == nil && p.Actor != nil:
		t.Fatalf("actor %+v, want none", p.Actor)
	case w.actor != nil:
		want := *w.actor
		if want.Issuer == "iss" {
			want.Issuer = iss
		}
		if p.Actor == nil || p.Actor.Subject != want.Subject || p.Actor.ClientID != want.ClientID || p.Actor.Issuer != want.Issuer || p.Actor.QualifiedSubject == "" {
			t.Fatalf("actor %+v, want %+v", p.Actor, want)
		}
	}
	if (p.Kind == KindAgentForUser) != (p.Actor != nil) || (p.Kind == KindAgent) != (p.AgentRule != "" && p.AgentRule != RuleAct && p.AgentRule != RuleOnBehalfOfClientIDs) {
		t.Fatalf("kind %s with actor %+v and rule %q", p.Kind, p.Actor, p.AgentRule)
	}
}

const (
	entraAgentApp  = "0d0bd5e6-3c4e-4f4b-9d6a-2c1b6c8f0a11"
	entraDaemonApp = "b9c4d2e1-5f6a-4b7c-8d9e-0f1a2b3c4d5e"
	entraAbeOID    = "690222be-ff1a-4d56-abd1-7e4f7d38e474"
	entraSP        = "f3a5c8e2-1b4d-4e6f-9a0b-7c8d9e0f1a2b"
	entraTenant    = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	kcServiceUser  = "bc2a72f4-d923-459a-be07-e37419516704"
	kcAlice        = "7f3e2d1c-0b9a-4876-9543-210fedcba987"
	auth0Org       = "org_9ybsU1dN2dKfDkBi"
)

// idpConfigs are the recommended settings per IdP; each test case starts
// from one of them.
var idpConfigs = map[string]IssuerConfig{
	"entra": {Name: "entra", Claims: ClaimsConfig{UserID: "oid", Org: "tid"},
		Agent: AgentConfig{OnBehalfOfClientIDs: []string{entraAgentApp}}},
	"okta": {Name: "okta"},
	"keycloak": {Name: "keycloak", Claims: ClaimsConfig{Roles: ClaimPath{"realm_access", "roles"}},
		Agent: AgentConfig{OnBehalfOfClientIDs: []string{"report-agent"}}},
	"auth0": {Name: "auth0", Claims: ClaimsConfig{Roles: ClaimPath{"https://acme.example/roles"}}},
}

func TestIdPTokenShapes(t *testing.T) {
	clk := newClock()
	no := false
	tests := []struct {
		name, file, idp string
		mod             func(*IssuerConfig)
		want            wantPrincipal
	}{
		// Microsoft Entra ID.
		{name: "entra v2 on-behalf-of", file: "entra-v2-obo.json", idp: "entra", want: wantPrincipal{
			kind: KindAgentForUser, rule: RuleOnBehalfOfClientIDs, actor: &Actor{Subject: entraAgentApp, ClientID: entraAgentApp, Issuer: "iss"},
			subject: "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ", userID: entraAbeOID, org: entraTenant, clientID: entraAgentApp,
			scopes: []string{"access_as_user", "Docs.Read"}}},
		{name: "entra v1 on-behalf-of (appid)", file: "entra-v1-obo.json", idp: "entra", want: wantPrincipal{
			kind: KindAgentForUser, rule: RuleOnBehalfOfClientIDs, actor: &Actor{Subject: entraAgentApp, ClientID: entraAgentApp, Issuer: "iss"},
			subject: "l3_roISQU222bULS9yi2k0XpqpOiMz5H3ZACo1GeXA", userID: entraAbeOID, org: entraTenant, clientID: entraAgentApp,
			scopes: []string{"user_impersonation"}}},
		{name: "entra v2 on-behalf-of, agent not listed: human", file: "entra-v2-obo.json", idp: "entra",
			mod: func(ic *IssuerConfig) { ic.Agent.OnBehalfOfClientIDs = nil }, want: wantPrincipal{
				kind: KindHuman, subject: "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ", userID: entraAbeOID, org: entraTenant, clientID: entraAgentApp,
				scopes: []string{"access_as_user", "Docs.Read"}}},
		{name: "entra v2 app-only (idtyp)", file: "entra-v2-app-only.json", idp: "entra", want: wantPrincipal{
			kind: KindAgent, rule: RuleEntraAppOnly, subject: entraSP, userID: entraSP, org: entraTenant, clientID: entraDaemonApp,
			roles: []string{"Docs.Read.All"}}},
		{name: "entra v1 app-only (oid == sub, no scp)", file: "entra-v1-app-only.json", idp: "entra", want: wantPrincipal{
			kind: KindAgent, rule: RuleEntraAppOnly, subject: entraSP, userID: entraSP, org: entraTenant, clientID: entraDaemonApp}},
		{name: "entra v2 app-only, rule off", file: "entra-v2-app-only.json", idp: "entra",
			mod: func(ic *IssuerConfig) { ic.Agent.Rules.EntraAppOnly = &no }, want: wantPrincipal{
				kind: KindHuman, subject: entraSP, userID: entraSP, org: entraTenant, clientID: entraDaemonApp, roles: []string{"Docs.Read.All"}}},
		{name: "entra v2 user", file: "entra-v2-user.json", idp: "entra", want: wantPrincipal{
			kind: KindHuman, subject: "7Qk2bV0f8uLrJv3wS9xZq1HnT4cYp6mD5eGa0iKoB2E", userID: entraAbeOID, org: entraTenant,
			clientID: "a1b2c3d4-0000-4000-8000-00000000c0de", scopes: []string{"Docs.Read", "Docs.Write"}, roles: []string{"Docs.Editor"}}},

		// Okta.
		{name: "okta client credentials", file: "okta-client-credentials.json", idp: "okta", want: wantPrincipal{
			kind: KindAgent, rule: RuleOktaClientCredentials, subject: "0oa8f2kx9ZTqW3yLm5d7", userID: "0oa8f2kx9ZTqW3yLm5d7",
			clientID: "0oa8f2kx9ZTqW3yLm5d7", scopes: []string{"docs:read"}}},
		{name: "okta client credentials, okta rule off: sub == client id (cid)", file: "okta-client-credentials.json", idp: "okta",
			mod: func(ic *IssuerConfig) { ic.Agent.Rules.OktaClientCredentials = &no }, want: wantPrincipal{
				kind: KindAgent, rule: RuleSubjectEqualsClientID, subject: "0oa8f2kx9ZTqW3yLm5d7", userID: "0oa8f2kx9ZTqW3yLm5d7",
				clientID: "0oa8f2kx9ZTqW3yLm5d7", scopes: []string{"docs:read"}}},
		{name: "okta client credentials, both rules off", file: "okta-client-credentials.json", idp: "okta",
			mod: func(ic *IssuerConfig) {
				ic.Agent.Rules.OktaClientCredentials = &no
				ic.Agent.SubjectEqualsClientID = &no // the legacy key
			}, want: wantPrincipal{
				kind: KindHuman, subject: "0oa8f2kx9ZTqW3yLm5d7", userID: "0oa8f2kx9ZTqW3yLm5d7",
				clientID: "0oa8f2kx9ZTqW3yLm5d7", scopes: []string{"docs:read"}}},
		{name: "okta user", file: "okta-user.json", idp: "okta", want: wantPrincipal{
			kind: KindHuman, subject: "alice@acme.example", userID: "alice@acme.example", clientID: "0oa1spaClient2ijk3l4m",
			scopes: []string{"openid", "profile", "docs:read"}}},

		// Keycloak.
		{name: "keycloak client credentials", file: "keycloak-client-credentials.json", idp: "keycloak", want: wantPrincipal{
			kind: KindAgent, rule: RuleKeycloakServiceAccount, subject: kcServiceUser, userID: kcServiceUser, clientID: "report-agent",
			scopes: []string{"profile", "email"}, roles: []string{"default-roles-acme", "offline_access", "uma_authorization", "agent"}, rolesInCl: true}},
		{name: "keycloak client credentials without profile scope", file: "keycloak-client-credentials-bare.json", idp: "keycloak", want: wantPrincipal{
			kind: KindAgent, rule: RuleKeycloakServiceAccount, subject: "0c9e8d7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f", userID: "0c9e8d7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f",
			clientID: "Nightly-Indexer"}},
		{name: "keycloak client credentials before 25 (clientId)", file: "keycloak-client-credentials-legacy.json", idp: "keycloak", want: wantPrincipal{
			kind: KindAgent, rule: RuleKeycloakServiceAccount, subject: "4d7c1e2a-9b3f-4e5d-8a6c-1f2e3d4c5b6a", userID: "4d7c1e2a-9b3f-4e5d-8a6c-1f2e3d4c5b6a",
			clientID: "Legacy-Sync", scopes: []string{"profile", "email"}, roles: []string{"offline_access", "uma_authorization"}, rolesInCl: true}},
		{name: "keycloak client credentials, rule off", file: "keycloak-client-credentials.json", idp: "keycloak",
			mod: func(ic *IssuerConfig) {
				ic.Agent.Rules.KeycloakServiceAccount = &no
				ic.Agent.OnBehalfOfClientIDs = nil
			}, want: wantPrincipal{
				kind: KindHuman, subject: kcServiceUser, userID: kcServiceUser, clientID: "report-agent",
				scopes: []string{"profile", "email"}, roles: []string{"default-roles-acme", "offline_access", "uma_authorization", "agent"}}},
		{name: "keycloak user", file: "keycloak-user.json", idp: "keycloak", want: wantPrincipal{
			kind: KindHuman, subject: kcAlice, userID: kcAlice, org: "acme", clientID: "mcp-web",
			scopes: []string{"openid", "profile", "email", "docs:read", "docs:write"}, roles: []string{"default-roles-acme", "offline_access", "editor"}, rolesInCl: true}},
		{name: "keycloak token exchange (azp is the agent)", file: "keycloak-token-exchange.json", idp: "keycloak", want: wantPrincipal{
			kind: KindAgentForUser, rule: RuleOnBehalfOfClientIDs, actor: &Actor{Subject: "report-agent", ClientID: "report-agent", Issuer: "iss"},
			subject: kcAlice, userID: kcAlice, org: "acme", clientID: "report-agent", scopes: []string{"docs:read"},
			roles: []string{"default-roles-acme", "editor"}, rolesInCl: true}},
		{name: "keycloak token exchange with act", file: "keycloak-token-exchange-act.json", idp: "keycloak", want: wantPrincipal{
			kind: KindAgentForUser, rule: RuleAct, actor: &Actor{Subject: kcServiceUser, ClientID: "report-agent"},
			subject: kcAlice, userID: kcAlice, org: "acme", clientID: "report-agent", scopes: []string{"docs:read"},
			roles: []string{"editor"}, rolesInCl: true}},

		// Auth0.
		{name: "auth0 client credentials (gty)", file: "auth0-client-credentials.json", idp: "auth0", want: wantPrincipal{
			kind: KindAgent, rule: RuleAuth0ClientCredentials, subject: "ZxUf9s6Vm0HlHRrC8zOMmP0KNhvZNcsA@clients",
			userID: "ZxUf9s6Vm0HlHRrC8zOMmP0KNhvZNcsA@clients", org: auth0Org, clientID: "ZxUf9s6Vm0HlHRrC8zOMmP0KNhvZNcsA", scopes: []string{"docs:read"}}},
		{name: "auth0 RFC 9068 profile client credentials (sub @clients)", file: "auth0-rfc9068-client-credentials.json", idp: "auth0", want: wantPrincipal{
			kind: KindAgent, rule: RuleAuth0ClientCredentials, subject: "awZfdIir8YFdGZWkvCejDoUb7SjTDicx@clients",
			userID: "awZfdIir8YFdGZWkvCejDoUb7SjTDicx@clients", clientID: "awZfdIir8YFdGZWkvCejDoUb7SjTDicx", scopes: []string{"docs:read", "docs:write"}}},
		{name: "auth0 client credentials, rule off", file: "auth0-rfc9068-client-credentials.json", idp: "auth0",
			mod: func(ic *IssuerConfig) { ic.Agent.Rules.Auth0ClientCredentials = &no }, want: wantPrincipal{
				kind: KindHuman, subject: "awZfdIir8YFdGZWkvCejDoUb7SjTDicx@clients",
				userID: "awZfdIir8YFdGZWkvCejDoUb7SjTDicx@clients", clientID: "awZfdIir8YFdGZWkvCejDoUb7SjTDicx", scopes: []string{"docs:read", "docs:write"}}},
		{name: "auth0 user", file: "auth0-user.json", idp: "auth0", want: wantPrincipal{
			kind: KindHuman, subject: "auth0|6553da60a54af58e29493993", userID: "auth0|6553da60a54af58e29493993", org: auth0Org,
			clientID: "K1AUPhZq8mRi0Q0pjhkfu1D7y6KjDQja", scopes: []string{"openid", "profile", "docs:read"}, roles: []string{"viewer"}, rolesInCl: true}},
	}
	idps := map[string]*devidp.Issuer{}
	for name := range idpConfigs {
		idps[name] = startIdP(t, clk)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := loadPayload(t, tc.file)
			ic := idpConfigs[tc.idp]
			ic.Agent.Rules = AgentRules{}
			if tc.mod != nil {
				tc.mod(&ic)
			}
			// Signed by the IdP's stand-in, verified over HTTP.
			idp := idps[tc.idp]
			ic.Issuer = idp.URL()
			v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{ic}})
			p, err := v.VerifyToken(context.Background(), mintPayload(idp, payload))
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			tc.want.check(t, p, idp.URL())
			if p.UserKey != UserKey(tc.idp, tc.want.org, tc.want.userID) {
				t.Fatalf("user key %q", p.UserKey)
			}
			// The same payload, with the IdP's own iss, offline.
			ic.Issuer = payload["iss"].(string)
			q, err := PrincipalFromClaims(Config{Issuers: []IssuerConfig{ic}}, payload)
			if err != nil {
				t.Fatalf("offline: %v", err)
			}
			tc.want.check(t, q, ic.Issuer)
		})
	}
}

// An Entra user reaches the service through the v1 and the v2 endpoint
// (two issuers sharing a user namespace): one user key, keyed on oid.
func TestEntraV1AndV2SameUser(t *testing.T) {
	clk := newClock()
	v1, v2 := startIdP(t, clk), startIdP(t, clk)
	base := idpConfigs["entra"]
	c1, c2 := base, base
	c1.Name, c1.Issuer, c1.UserNamespace = "entra-v1", v1.URL(), "entra"
	c2.Name, c2.Issuer, c2.UserNamespace = "entra-v2", v2.URL(), "entra"
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{c1, c2}})
	p1, err := v.VerifyToken(context.Background(), mintPayload(v1, loadPayload(t, "entra-v1-obo.json")))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := v.VerifyToken(context.Background(), mintPayload(v2, loadPayload(t, "entra-v2-obo.json")))
	if err != nil {
		t.Fatal(err)
	}
	if p1.UserKey != p2.UserKey || p1.UserKey != "entra|"+entraTenant+"|"+entraAbeOID || p1.Subject == p2.Subject {
		t.Fatalf("keys %q %q subjects %q %q", p1.UserKey, p2.UserKey, p1.Subject, p2.Subject)
	}
	if p1.Actor.QualifiedSubject != "entra/"+entraAgentApp || p2.Actor.QualifiedSubject != p1.Actor.QualifiedSubject {
		t.Fatalf("actors %+v %+v", p1.Actor, p2.Actor)
	}
}

// The Keycloak rule needs the token's own client: by its service-account
// username (lower-cased as Keycloak stores it) or by the client notes
// (client_id or clientId equal to azp, with clientHost or clientAddress).
// A human whose username mimics another client's service account, or a
// token with only part of the notes, is not an agent.
func TestKeycloakServiceAccountRule(t *testing.T) {
	cfg := Config{Issuers: []IssuerConfig{{Name: "kc", Issuer: "https://sso.acme.example/realms/acme"}}}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		kind   Kind
	}{
		{"username only", map[string]any{"azp": "Legacy-Sync", "preferred_username": "service-account-legacy-sync"}, KindAgent},
		{"client_id and clientHost", map[string]any{"azp": "x", "client_id": "x", "clientHost": "h"}, KindAgent},
		{"clientId and clientAddress", map[string]any{"azp": "x", "clientId": "x", "clientAddress": "a"}, KindAgent},
		{"username of another client", map[string]any{"azp": "mcp-web", "preferred_username": "service-account-report-agent"}, KindHuman},
		{"username not lower-cased", map[string]any{"azp": "Legacy-Sync", "preferred_username": "service-account-Legacy-Sync"}, KindHuman},
		{"client notes without host or address", map[string]any{"azp": "mcp-web", "client_id": "mcp-web"}, KindHuman},
		{"client notes of another client", map[string]any{"azp": "mcp-web", "client_id": "report-agent", "clientAddress": "10.0.0.1"}, KindHuman},
		{"no azp", map[string]any{"preferred_username": "service-account-", "clientHost": "h", "clientId": ""}, KindHuman},
		{"username not a string", map[string]any{"azp": "x", "preferred_username": []any{"service-account-x"}}, KindHuman},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.claims["iss"] = "https://sso.acme.example/realms/acme"
			tc.claims["sub"] = kcAlice
			p, err := PrincipalFromClaims(cfg, tc.claims)
			if err != nil || p.Kind != tc.kind {
				t.Fatalf("%+v %v, want %s", p, err, tc.kind)
			}
		})
	}
}

func TestAgentConfigValidate(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name string
		ac   AgentConfig
		want string
	}{
		{"overlap", AgentConfig{ClientIDs: []string{"a", "b"}, OnBehalfOfClientIDs: []string{"b"}}, `issuers[0].agent.on_behalf_of_client_ids[0]: "b" is also in client_ids`},
		{"empty obo id", AgentConfig{OnBehalfOfClientIDs: []string{""}}, "issuers[0].agent.on_behalf_of_client_ids[0]: must not be empty"},
		{"empty client id", AgentConfig{ClientIDs: []string{""}}, "issuers[0].agent.client_ids[0]: must not be empty"},
		{"legacy key contradicts", AgentConfig{SubjectEqualsClientID: &yes, Rules: AgentRules{SubjectEqualsClientID: &no}}, "issuers[0].agent.subject_equals_client_id: contradicts"},
	} {
		err := Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Agent: tc.ac}}}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	ok := Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Agent: AgentConfig{SubjectEqualsClientID: &no, Rules: AgentRules{SubjectEqualsClientID: &no}}}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	// Defaults: every rule on; the legacy key sets its twin; nothing aliased.
	d := Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Agent: AgentConfig{SubjectEqualsClientID: &no}}}}.withDefaults().Issuers[0].Agent
	r := d.Rules
	if *r.SubjectEqualsClientID || !*r.Auth0ClientCredentials || !*r.OktaClientCredentials || !*r.KeycloakServiceAccount || !*r.EntraAppOnly ||
		*d.SubjectEqualsClientID || d.SubjectEqualsClientID == &no || r.SubjectEqualsClientID == &no {
		t.Fatalf("defaults %+v", d)
	}
}

// The agent section decodes strictly from YAML, old keys included.
func TestAgentConfigYAML(t *testing.T) {
	doc := `
client_ids: [nightly]
on_behalf_of_client_ids: [assistant]
subject_equals_client_id: false
rules:
  entra_app_only: false
  keycloak_service_account: true
`
	var ac AgentConfig
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&ac); err != nil {
		t.Fatal(err)
	}
	if ac.ClientIDs[0] != "nightly" || ac.OnBehalfOfClientIDs[0] != "assistant" || *ac.SubjectEqualsClientID || *ac.Rules.EntraAppOnly ||
		!*ac.Rules.KeycloakServiceAccount || ac.Rules.OktaClientCredentials != nil {
		t.Fatalf("%+v", ac)
	}
	dec = yaml.NewDecoder(strings.NewReader("rules: {okta: false}"))
	dec.KnownFields(true)
	if err := dec.Decode(&ac); err == nil {
		t.Fatal("unknown rule accepted")
	}
}
