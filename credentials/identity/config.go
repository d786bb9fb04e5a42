package identity

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/jwks"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Defaults applied by NewVerifier to zero-valued configuration fields.
const (
	DefaultLeeway         = 30 * time.Second
	MaxLeeway             = 5 * time.Minute
	DefaultJWKSMinRefresh = 30 * time.Second
	DefaultHTTPTimeout    = 5 * time.Second
	// DefaultCacheSize bounds the verified-token cache. Each entry keeps
	// the caller's claims and what the server derives from them (about
	// 7 KiB for a token with a dozen claims), so the default stays near
	// 150 MiB at most.
	DefaultCacheSize = 20_000
	// DefaultCacheMaxAge bounds how long a verified JWT stays cached,
	// whatever its exp (Config.CacheMaxAge).
	DefaultCacheMaxAge = 5 * time.Minute
	// MinCacheMaxAge and MaxCacheMaxAge bound every cache_max_age.
	MinCacheMaxAge = time.Second
	MaxCacheMaxAge = time.Hour
)

// DefaultAlgorithms is the signing-algorithm allow-list used when an issuer
// configures none.
var defaultAlgorithms = []string{"RS256", "PS256", "ES256"}

// asymmetricAlgorithms are the JWS algorithms an issuer may allow: those
// the jwks package verifies.
var asymmetricAlgorithms = jwks.Algorithms()

// ClaimsConfig names the token claims the verifier reads. Empty fields take
// the documented defaults.
//
// The user id, org and client id claims must be strings or integers
// (rendered exactly, whatever their size); any other type refuses the
// token (invalid_claim naming the claim). See claims.go.
type ClaimsConfig struct {
	// UserID is the claim holding the stable user id. Default "sub".
	// For Entra ID prefer "oid" (sub is pairwise: it differs per client).
	UserID string `yaml:"user_id"`
	// Org is the claim holding the organization id. Default "org_id".
	Org string `yaml:"org"`
	// ClientID is the claim holding the OAuth client id. Default
	// "client_id"; when the configured claim is absent, "azp" (OIDC,
	// Entra v2, Keycloak, Auth0), then "appid" (Entra v1), then "cid"
	// (Okta).
	ClientID string `yaml:"client_id"`
	// Scope is the claim holding scopes. Default "scope" (space separated),
	// falling back to "scp" (array or space separated string).
	Scope string `yaml:"scope"`
	// Roles is where the caller's roles are: a dotted path such as
	// "realm_access.roles" (Keycloak realm roles) or a list of claim names
	// (["https://example.com/roles"] for Auth0 namespaced claims). Default
	// "roles" (Entra app roles, most IdPs). The value must be an array of
	// strings; any other shape refuses the token. Policies read roles as
	// principal.claims.roles: with another path, that claim is replaced by
	// the roles found at the path (and removed when there are none), so
	// policies written for `roles` work unchanged. Principal.Roles holds
	// them too.
	Roles ClaimPath `yaml:"roles"`
}

// AgentConfig decides which tokens without an `act` claim belong to an
// agent. A token with `act` (RFC 8693 delegation) is always
// agent_for_user, whatever this says. Otherwise, in this order:
//
//  1. kind agent (a workload acting on its own behalf) when the token's
//     client id is in ClientIDs, when Claim holds one of Values, or when one
//     of the enabled Rules matches (all are on by default; see AgentRules
//     for the token shape each one recognises);
//  2. kind agent_for_user when the token's client id is in
//     OnBehalfOfClientIDs: a user's token obtained by an agent (Entra
//     on-behalf-of, a Keycloak token exchange without `act`, a login to the
//     agent's own client). The actor is the client, exactly as if the token
//     carried act {sub: <client id>, client_id: <client id>, iss: <iss>};
//  3. kind human otherwise.
//
// For example:
//
//	agent:
//	  client_ids: [nightly-report]          # always agents
//	  on_behalf_of_client_ids: [8f1c...]    # agents acting for the signed-in user
//	  rules: {entra_app_only: false}        # switch one built-in rule off
type AgentConfig struct {
	// ClientIDs lists client ids whose tokens are agents acting on their
	// own behalf.
	ClientIDs []string `yaml:"client_ids"`
	// OnBehalfOfClientIDs lists client ids of agents whose tokens carry a
	// user (sub is the user, the client is the agent): such tokens are
	// agent_for_user with the client as actor, unless a rule above makes
	// them agents. A client id may not be in both lists.
	OnBehalfOfClientIDs []string `yaml:"on_behalf_of_client_ids"`
	// Claim and Values: a token whose Claim (string or array of strings)
	// holds one of Values is an agent, e.g. claim "token_use" values ["agent"].
	Claim  string   `yaml:"claim"`
	Values []string `yaml:"values"`
	// SubjectEqualsClientID is rules.subject_equals_client_id, kept for
	// existing configurations; setting both to different values is an error.
	SubjectEqualsClientID *bool `yaml:"subject_equals_client_id"`
	// Rules switches the built-in token-shape rules; each defaults to true.
	Rules AgentRules `yaml:"rules"`
}

// AgentRules are the built-in rules recognising an agent acting on its own
// behalf (client-credentials and app-only tokens) from the shapes the major
// identity providers give such tokens. Each is on unless set to false. A
// rule reads only string claims; a claim of another type does not match.
type AgentRules struct {
	// SubjectEqualsClientID: sub equals the token's client id (client_id,
	// else azp, appid, cid): the client-credentials grant of most IdPs
	// (RFC 9068 section 2.2: sub is the client when no user is involved).
	SubjectEqualsClientID *bool `yaml:"subject_equals_client_id"`
	// Auth0ClientCredentials: Auth0 machine-to-machine tokens, recognised by
	// gty "client-credentials" (Auth0 token profile) or by sub being
	// "<client id>@clients" (both token profiles; the RFC 9068 profile has
	// client_id and no gty).
	Auth0ClientCredentials *bool `yaml:"auth0_client_credentials"`
	// OktaClientCredentials: Okta access tokens whose sub equals cid (Okta's
	// client id claim). Okta user tokens have sub = the user's login and a
	// uid claim.
	OktaClientCredentials *bool `yaml:"okta_client_credentials"`
	// KeycloakServiceAccount: a Keycloak client-credentials token, whose sub
	// is the id of the client's service-account user and azp the client.
	// Recognised by preferred_username "service-account-<azp>" (the user
	// Keycloak creates for the client, lower-cased as Keycloak stores
	// usernames), or by the client notes Keycloak adds to service-account
	// tokens: client_id (Keycloak 25+) or clientId (earlier) equal to azp,
	// together with clientAddress or clientHost.
	KeycloakServiceAccount *bool `yaml:"keycloak_service_account"`
	// EntraAppOnly: a Microsoft Entra ID app-only token (client credentials
	// or a managed identity). Recognised by idtyp "app" (the optional claim
	// Microsoft calls the most accurate signal), or, without idtyp, by an
	// oid equal to sub and no scp: in a token for a user, sub is a pairwise
	// id that differs from the user's oid, and scp is present.
	EntraAppOnly *bool `yaml:"entra_app_only"`
}

// Names of the classification rules (Principal.AgentRule).
const (
	RuleAct                    = "act"
	RuleClientIDs              = "client_ids"
	RuleOnBehalfOfClientIDs    = "on_behalf_of_client_ids"
	RuleClaim                  = "claim"
	RuleSubjectEqualsClientID  = "subject_equals_client_id"
	RuleAuth0ClientCredentials = "auth0_client_credentials"
	RuleOktaClientCredentials  = "okta_client_credentials"
	RuleKeycloakServiceAccount = "keycloak_service_account"
	RuleEntraAppOnly           = "entra_app_only"
)

// withDefaults returns r with every unset rule true and no pointer shared
// with the caller.
func (r AgentRules) withDefaults() AgentRules {
	for _, f := range []**bool{&r.SubjectEqualsClientID, &r.Auth0ClientCredentials, &r.OktaClientCredentials, &r.KeycloakServiceAccount, &r.EntraAppOnly} {
		v := *f == nil || **f
		*f = &v
	}
	return r
}

// enabled reports whether a rule is on (unset means on).
func enabled(b *bool) bool { return b == nil || *b }

// IssuerConfig configures one trusted token issuer.
type IssuerConfig struct {
	// Name identifies the issuer in configuration and logs.
	Name string `yaml:"name"`
	// Issuer is the exact string expected in the `iss` claim.
	Issuer string `yaml:"issuer"`
	// DiscoveryURL defaults to Issuer + "/.well-known/openid-configuration".
	// For a plain OAuth authorization server set it to the RFC 8414 document.
	DiscoveryURL string `yaml:"discovery_url"`
	// JWKSURL, when set, is used directly and discovery is skipped.
	JWKSURL string `yaml:"jwks_url"`
	// Algorithms is the JWS allow-list. Default [RS256, PS256, ES256].
	// Symmetric algorithms (HS*) and "none" are refused by Validate.
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s, max 5m.
	Leeway time.Duration `yaml:"leeway"`
	// TokenTypes, when set, is the allow-list of the JWS "typ" header
	// (compared case-insensitively, an "application/" prefix ignored), e.g.
	// [at+jwt] for issuers that follow RFC 9068, so that ID tokens signed by
	// the same keys are not accepted as access tokens. Empty accepts any typ
	// (many IdPs write "JWT").
	TokenTypes []string `yaml:"token_types"`
	// UserNamespace groups issuers that share a user directory: the same
	// user id and org from two issuers with the same namespace is one user.
	// It also qualifies the subject sent upstream: "<user_namespace>/<sub>"
	// (Principal.QualifiedSubject). Default Name. It must match
	// [a-z0-9][a-z0-9._-]* (at most 64 bytes); "spiffe" is reserved.
	UserNamespace string `yaml:"user_namespace"`
	// SubjectsGloballyUnique declares that this issuer's `sub` values never
	// name different principals across issuers (for example UUIDs from the
	// one directory all issuers share), so the raw sub is sent upstream
	// instead of "<user_namespace>/<sub>". All issuers of a user_namespace
	// must agree, and at most one user_namespace may declare it. A raw sub
	// that looks like a qualified one ("<configured namespace>/...") or a
	// SPIFFE id is refused (ambiguous_subject).
	SubjectsGloballyUnique bool         `yaml:"subjects_globally_unique"`
	Claims                 ClaimsConfig `yaml:"claims"`
	Agent                  AgentConfig  `yaml:"agent"`
	// Introspection, when set, makes this issuer judge opaque (non-JWS)
	// access tokens through its RFC 7662 introspection endpoint.
	Introspection *IntrospectionConfig `yaml:"introspection"`
}

// SPIFFEConfig configures mTLS callers identified by SPIFFE ids.
type SPIFFEConfig struct {
	// TrustDomains lists the accepted trust domains (e.g. "prod.example.org").
	TrustDomains []string `yaml:"trust_domains"`
	// Org is the organization assigned to SPIFFE principals.
	Org string `yaml:"org"`
}

// Config configures a Verifier.
type Config struct {
	Issuers []IssuerConfig `yaml:"issuers"`
	SPIFFE  SPIFFEConfig   `yaml:"spiffe"`
	// CacheSize is the maximum number of verified tokens kept. Default
	// 20000 (DefaultCacheSize).
	CacheSize int64 `yaml:"cache_size"`
	// CacheMaxAge bounds how long a verified JWT is served from the cache
	// (and so how long a revoked token keeps working without being
	// verified again); an entry never outlives the token's exp either.
	// Default 5m, between 1s and 1h. Introspected tokens use
	// issuers[].introspection.cache_max_age.
	CacheMaxAge time.Duration `yaml:"cache_max_age"`
	// JWKSMinRefresh is the minimum interval between JWKS refreshes of one
	// issuer triggered by unknown key ids. Default 30s.
	JWKSMinRefresh time.Duration `yaml:"jwks_min_refresh"`
	// HTTPTimeout bounds each discovery or JWKS request. Default 5s.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
}

// Validate checks the configuration without touching the network. All
// problems are reported, joined, each prefixed with its field path.
func (c Config) Validate() error {
	var l fielderr.List
	if len(c.Issuers) == 0 && len(c.SPIFFE.TrustDomains) == 0 {
		l.Add("issuers", "at least one issuer or spiffe trust domain is required")
	}
	seen := issuerNames{names: map[string]int{}, issuers: map[string]int{}}
	for i, is := range c.Issuers {
		p := fmt.Sprintf("issuers[%d]", i)
		seen.check(&l, p, i, is)
		is.validateVerification(&l, p)
		is.validateMapping(&l, p)
	}
	l = append(l, validateSubjectSpaces(c.Issuers)...)
	l = append(l, validateIntrospectionRouting(c.Issuers)...)
	for i, td := range c.SPIFFE.TrustDomains {
		if err := checkTrustDomain(td); err != nil {
			l.Addf(fmt.Sprintf("spiffe.trust_domains[%d]", i), "%v", err)
		}
	}
	if c.CacheSize < 0 {
		l.Add("cache_size", "must not be negative")
	}
	if err := checkMaxAge(c.CacheMaxAge); err != nil {
		l.Addf("cache_max_age", "%v", err)
	}
	if c.JWKSMinRefresh < 0 {
		l.Add("jwks_min_refresh", "must not be negative")
	}
	if c.HTTPTimeout < 0 {
		l.Add("http_timeout", "must not be negative")
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("identity: invalid config: %w", err)
	}
	return nil
}

// issuerNames remembers the index of the first issuer with each name and
// each issuer URL, to report duplicates.
type issuerNames struct{ names, issuers map[string]int }

// check checks the name and issuer of is, the i-th issuer at path p.
func (n issuerNames) check(l *fielderr.List, p string, i int, is IssuerConfig) {
	if is.Name == "" {
		l.Add(p+".name", "required")
	} else if j, dup := n.names[is.Name]; dup {
		l.Addf(p+".name", "duplicate of issuers[%d]", j)
	} else {
		n.names[is.Name] = i
	}
	if is.Issuer == "" {
		l.Add(p+".issuer", "required")
		return
	}
	if j, dup := n.issuers[is.Issuer]; dup {
		l.Addf(p+".issuer", "duplicate of issuers[%d]", j)
	} else {
		n.issuers[is.Issuer] = i
	}
	if err := checkFetchURL(is.Issuer); err != nil {
		l.Addf(p+".issuer", "%v", err)
	}
}

// validateVerification checks what verifying is's tokens uses: the
// endpoints, algorithms, token types and leeway.
func (is IssuerConfig) validateVerification(l *fielderr.List, p string) {
	if is.DiscoveryURL != "" {
		if err := checkFetchURL(is.DiscoveryURL); err != nil {
			l.Addf(p+".discovery_url", "%v", err)
		}
	}
	if is.JWKSURL != "" {
		if err := checkFetchURL(is.JWKSURL); err != nil {
			l.Addf(p+".jwks_url", "%v", err)
		}
	}
	for j, alg := range is.Algorithms {
		ap := fmt.Sprintf("%s.algorithms[%d]", p, j)
		switch {
		case strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS"):
			l.Addf(ap, "%s not allowed", alg)
		case !slices.Contains(asymmetricAlgorithms, alg):
			l.Addf(ap, "unknown algorithm %q", alg)
		}
	}
	for j, tt := range is.TokenTypes {
		if tt == "" || strings.ContainsFunc(tt, func(r rune) bool { return r <= ' ' || r > '~' }) {
			l.Add(fmt.Sprintf("%s.token_types[%d]", p, j), "must be a non-empty token of visible ASCII")
		}
	}
	if is.Leeway < 0 {
		l.Add(p+".leeway", "must not be negative")
	} else if is.Leeway > MaxLeeway {
		l.Addf(p+".leeway", "%v exceeds the maximum %v", is.Leeway, MaxLeeway)
	}
}

// validateMapping checks how is's tokens map to a principal: agent
// recognition, roles, user namespace and introspection.
func (is IssuerConfig) validateMapping(l *fielderr.List, p string) {
	if (is.Agent.Claim == "") != (len(is.Agent.Values) == 0) {
		l.Add(p+".agent", "claim and values must be set together")
	}
	*l = append(*l, is.Agent.validate(p+".agent")...)
	if is.Claims.Roles != nil {
		if err := is.Claims.Roles.validate(); err != nil {
			l.Addf(p+".claims.roles", "%v", err)
		}
	}
	switch {
	case is.UserNamespace != "":
		if err := checkNamespace(is.UserNamespace); err != nil {
			l.Addf(p+".user_namespace", "%v", err)
		}
	case is.Name != "":
		if err := checkNamespace(is.Name); err != nil {
			l.Addf(p+".name", "used as the user namespace: %v (or set user_namespace)", err)
		}
	}
	if is.Introspection != nil {
		*l = append(*l, is.Introspection.validate(p+".introspection")...)
	}
}

// validate checks the agent lists (non-empty ids, no id in both lists) and
// that the legacy subject_equals_client_id agrees with its rules twin.
func (a AgentConfig) validate(path string) []error {
	var errs []error
	own := map[string]bool{}
	for j, id := range a.ClientIDs {
		if id == "" {
			errs = append(errs, fmt.Errorf("%s.client_ids[%d]: must not be empty", path, j))
		}
		own[id] = true
	}
	for j, id := range a.OnBehalfOfClientIDs {
		switch {
		case id == "":
			errs = append(errs, fmt.Errorf("%s.on_behalf_of_client_ids[%d]: must not be empty", path, j))
		case own[id]:
			errs = append(errs, fmt.Errorf("%s.on_behalf_of_client_ids[%d]: %q is also in client_ids (an agent acts alone or for a user, not both)", path, j, id))
		}
	}
	if a.SubjectEqualsClientID != nil && a.Rules.SubjectEqualsClientID != nil && *a.SubjectEqualsClientID != *a.Rules.SubjectEqualsClientID {
		errs = append(errs, fmt.Errorf("%s.subject_equals_client_id: contradicts %s.rules.subject_equals_client_id (set only one)", path, path))
	}
	return errs
}

// checkMaxAge accepts 0 (the default) or a duration in [1s, 1h].
func checkMaxAge(d time.Duration) error {
	if d != 0 && (d < MinCacheMaxAge || d > MaxCacheMaxAge) {
		return fmt.Errorf("%v is outside [%v, %v]", d, MinCacheMaxAge, MaxCacheMaxAge)
	}
	return nil
}

// validateSubjectSpaces checks that issuers sharing a user namespace agree
// on subjects_globally_unique and that at most one namespace declares it,
// so that raw subjects come from one user directory only.
func validateSubjectSpaces(issuers []IssuerConfig) []error {
	var errs []error
	type first struct {
		i      int
		global bool
	}
	seen := map[string]first{}
	globalNS, globalAt := "", -1
	for i, is := range issuers {
		ns := is.UserNamespace
		if ns == "" {
			ns = is.Name
		}
		if ns == "" {
			continue
		}
		p := fmt.Sprintf("issuers[%d].subjects_globally_unique", i)
		if f, ok := seen[ns]; ok {
			if f.global != is.SubjectsGloballyUnique {
				errs = append(errs, fmt.Errorf("%s: must equal issuers[%d]'s, which shares user namespace %q", p, f.i, ns))
			}
			continue
		}
		seen[ns] = first{i, is.SubjectsGloballyUnique}
		if !is.SubjectsGloballyUnique {
			continue
		}
		if globalAt >= 0 {
			errs = append(errs, fmt.Errorf("%s: only one user namespace may declare globally unique subjects (issuers[%d], namespace %q, does)", p, globalAt, globalNS))
			continue
		}
		globalNS, globalAt = ns, i
	}
	return errs
}

// checkFetchURL accepts absolute https URLs, and http only for loopback hosts
// (development IdPs such as devidp).
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" || u.RawQuery != "" {
		return fmt.Errorf("must be an absolute URL without userinfo, query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if urlcheck.IsLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("http is allowed only for loopback hosts")
	default:
		return fmt.Errorf("scheme must be https")
	}
}

// withDefaults returns a copy of c with defaults filled in. Slices are copied
// so the caller's configuration is never aliased.
func (c Config) withDefaults() Config {
	out := c
	if out.CacheSize == 0 {
		out.CacheSize = DefaultCacheSize
	}
	if out.CacheMaxAge == 0 {
		out.CacheMaxAge = DefaultCacheMaxAge
	}
	if out.JWKSMinRefresh == 0 {
		out.JWKSMinRefresh = DefaultJWKSMinRefresh
	}
	if out.HTTPTimeout == 0 {
		out.HTTPTimeout = DefaultHTTPTimeout
	}
	out.SPIFFE.TrustDomains = slices.Clone(c.SPIFFE.TrustDomains)
	out.Issuers = make([]IssuerConfig, len(c.Issuers))
	for i, is := range c.Issuers {
		is.Algorithms = slices.Clone(is.Algorithms)
		if len(is.Algorithms) == 0 {
			is.Algorithms = slices.Clone(defaultAlgorithms)
		}
		if is.DiscoveryURL == "" {
			is.DiscoveryURL = strings.TrimSuffix(is.Issuer, "/") + "/.well-known/openid-configuration"
		}
		if is.Leeway == 0 {
			is.Leeway = DefaultLeeway
		}
		if is.UserNamespace == "" {
			is.UserNamespace = is.Name
		}
		if is.Claims.UserID == "" {
			is.Claims.UserID = "sub"
		}
		if is.Claims.Org == "" {
			is.Claims.Org = "org_id"
		}
		if is.Claims.ClientID == "" {
			is.Claims.ClientID = "client_id"
		}
		if is.Claims.Scope == "" {
			is.Claims.Scope = "scope"
		}
		if len(is.Claims.Roles) == 0 {
			is.Claims.Roles = ClaimPath{"roles"}
		} else {
			is.Claims.Roles = slices.Clone(is.Claims.Roles)
		}
		if is.Introspection != nil {
			in := is.Introspection.withDefaults()
			is.Introspection = &in
		}
		is.Agent.ClientIDs = slices.Clone(is.Agent.ClientIDs)
		is.Agent.OnBehalfOfClientIDs = slices.Clone(is.Agent.OnBehalfOfClientIDs)
		is.Agent.Values = slices.Clone(is.Agent.Values)
		if is.Agent.Rules.SubjectEqualsClientID == nil {
			is.Agent.Rules.SubjectEqualsClientID = is.Agent.SubjectEqualsClientID
		}
		is.Agent.Rules = is.Agent.Rules.withDefaults()
		is.Agent.SubjectEqualsClientID = is.Agent.Rules.SubjectEqualsClientID
		out.Issuers[i] = is
	}
	return out
}
