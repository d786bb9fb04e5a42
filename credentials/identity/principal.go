package identity

import (
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Kind classifies a caller.
type Kind string

const (
	// KindHuman is a user acting directly (no `act` claim, not an agent).
	KindHuman Kind = "human"
	// KindAgentForUser is an agent acting on behalf of a user (RFC 8693 `act`).
	KindAgentForUser Kind = "agent_for_user"
	// KindAgent is a workload acting on its own behalf (client credentials,
	// configured agent claims, or mTLS SPIFFE).
	KindAgent Kind = "agent"
	// KindAnonymous is a caller that presented no credential.
	KindAnonymous Kind = "anonymous"
)

// Actor is a party acting on behalf of the token subject (RFC 8693 `act`).
type Actor struct {
	Subject  string
	ClientID string
	// Issuer is the act claim's own `iss`, empty when it has none.
	Issuer string
	// QualifiedSubject is Subject qualified by the user namespace of the
	// actor's issuer (the act claim's iss, else the token's issuer), as for
	// Principal.QualifiedSubject; "iss:<PathEscape(iss)>/<sub>" when the
	// act claim's iss is not a configured issuer; empty when the actor has
	// no sub.
	QualifiedSubject string
}

// Principal is an authenticated caller.
//
// A Principal is immutable once returned: the same value (including its
// slices and Claims map) may be shared between goroutines via the token
// cache, and callers must not modify it.
type Principal struct {
	Kind Kind
	// Method is how the caller was authenticated: "jwt" (a verified JWS),
	// "introspection" (an opaque token judged by RFC 7662 introspection)
	// or "mtls" (a SPIFFE id).
	Method string
	// Subject is `sub`: the human for human/agent_for_user, the agent or
	// workload for agent.
	Subject string
	// QualifiedSubject is the subject as mcpauthz names it to upstreams
	// (attribution headers, minted tokens, signed attribution):
	// "<user_namespace>/<sub>", the raw sub for issuers configured with
	// subjects_globally_unique, the SPIFFE id for mTLS callers. Distinct
	// callers never share it (see subject.go).
	QualifiedSubject string
	// UserID is the stable user id (claim per issuer config, default sub).
	UserID string
	// Org is the organization id (claim per issuer config, default org_id); may be empty.
	Org string
	// UserKey is namespace|org|user_id (each part with '%' and '|' escaped).
	// The same person reaching the service through two issuers that share a
	// user_namespace gets the same key. It never contains a session id.
	UserKey  string
	Issuer   string
	ClientID string
	// Scopes come from "scope" (space separated) or "scp" (array or string).
	Scopes []string
	// Roles are the roles at the issuer's claims.roles path (default
	// "roles"), nil when the token has none.
	Roles    []string
	Audience []string
	// Actor is the current actor: the outermost `act`, or the client of a
	// token whose client is in agent.on_behalf_of_client_ids; nil if none.
	Actor *Actor
	// AgentRule names what decided Kind (Rule* constants): "act" or a rule
	// of AgentConfig; "" for humans, mTLS and anonymous callers.
	AgentRule string
	// Chain lists prior actors (the `act` nested inside the outermost),
	// outermost first. Informational only.
	Chain     []Actor
	SPIFFEID  string
	ExpiresAt time.Time
	// Claims holds every claim of the token, for policy.
	Claims map[string]any
	// TokenHash is the SHA-256 of the verified token (zero for mTLS and
	// anonymous callers). Downstream caches key on it instead of hashing
	// the token again; it is not secret.
	TokenHash [32]byte

	// memo is what the caller derived from this Principal (Memo), attached
	// once; it lives exactly as long as the cached Principal.
	memo atomic.Pointer[memoBox]
}

type memoBox struct{ v any }

// Memo returns the value attached with AttachMemo, nil when none is.
func (p *Principal) Memo() any {
	if b := p.memo.Load(); b != nil {
		return b.v
	}
	return nil
}

// AttachMemo attaches v, derived from p by the caller, unless a value is
// attached already; it returns the value attached. The token cache shares
// one Principal between every request with the same token, so what a
// caller derives from it once (converted claims, header values) is kept
// for exactly as long as the Principal is cached, in the same entry,
// without a second cache to size. The attached value must be immutable.
func (p *Principal) AttachMemo(v any) any {
	if p.memo.CompareAndSwap(nil, &memoBox{v: v}) {
		return v
	}
	return p.memo.Load().v
}

// Anonymous returns the Principal for a caller without credentials.
func Anonymous() *Principal { return &Principal{Kind: KindAnonymous} }

// HumanPresent reports whether a human is behind the request (directly or
// through a delegating agent).
func (p *Principal) HumanPresent() bool {
	return p != nil && (p.Kind == KindHuman || p.Kind == KindAgentForUser)
}

// maxActDepth bounds nested `act` claims.
const maxActDepth = 16

// buildPrincipal builds the Principal of a token issued by ic (its iss is
// ic.Issuer) with these claims, decoded exactly (json.Number, see
// claims.go). ss qualifies the subjects. When ic's roles path is not
// "roles", claims["roles"] is replaced by the roles found there.
func buildPrincipal(ss *subjectSpace, ic IssuerConfig, claims map[string]any, exp time.Time) (*Principal, error) {
	subV, present := claims["sub"]
	sub, isString := subV.(string)
	switch {
	case !present || isString && sub == "":
		return nil, tokenErr(ReasonMissingClaim, "sub")
	case !isString:
		return nil, tokenErr(ReasonInvalidClaim, "sub: must be a string, not "+jsonKind(subV))
	}
	qsub, err := ss.qualify(subjectScope{namespace: ic.UserNamespace, global: ic.SubjectsGloballyUnique}, sub, "sub")
	if err != nil {
		return nil, err
	}
	p := &Principal{
		Method:           "jwt",
		Subject:          sub,
		QualifiedSubject: qsub,
		Issuer:           ic.Issuer,
		ExpiresAt:        exp,
		Claims:           claims,
	}
	if p.ClientID, err = clientIDClaim(claims, ic.Claims.ClientID); err != nil {
		return nil, err
	}
	scopeClaim := ic.Claims.Scope
	if _, present := claims[scopeClaim]; !present {
		scopeClaim = "scp"
	}
	if p.Scopes, err = parseScopes(claims[scopeClaim], scopeClaim); err != nil {
		return nil, err
	}
	var ok bool
	if p.Audience, ok = stringOrArray(claims["aud"]); !ok {
		return nil, tokenErr(ReasonInvalidClaim, "aud: must be a string or an array of strings")
	}
	if p.Org, _, err = keyClaim(claims, ic.Claims.Org, ic.Claims.Org+" (org)"); err != nil {
		return nil, err
	}
	if err := applyRoles(p, ic.Claims.Roles); err != nil {
		return nil, err
	}

	if act, present := claims["act"]; present {
		actor, chain, err := parseAct(ss, ic.Issuer, act)
		if err != nil {
			return nil, err
		}
		p.Kind, p.Actor, p.Chain, p.AgentRule = KindAgentForUser, actor, chain, RuleAct
	} else {
		c := classify(ic.Agent, claims, sub, p.ClientID)
		p.Kind, p.AgentRule = c.kind, c.rule
		if c.actor {
			// The client acts for the user, as act {sub, client_id, iss} would say.
			q, err := ss.qualifyActor(ic.Issuer, ic.Issuer, p.ClientID)
			if err != nil {
				return nil, err
			}
			p.Actor = &Actor{Subject: p.ClientID, ClientID: p.ClientID, Issuer: ic.Issuer, QualifiedSubject: q}
		}
	}

	uid, _, err := keyClaim(claims, ic.Claims.UserID, ic.Claims.UserID+" (user id)")
	if err != nil {
		return nil, err
	}
	p.UserID = uid
	if p.UserID == "" {
		if p.Kind != KindAgent {
			return nil, tokenErr(ReasonMissingClaim, "user id ("+ic.Claims.UserID+")")
		}
		p.UserID = sub // an agent's own identity
	}
	p.UserKey = UserKey(ic.UserNamespace, p.Org, p.UserID)
	return p, nil
}

// clientIDFallbacks are read, in order, when the configured client id claim
// is absent: azp (OIDC, Entra v2, Keycloak, Auth0), appid (Entra v1), cid
// (Okta).
var clientIDFallbacks = []string{"azp", "appid", "cid"}

// clientIDClaim returns the token's client id: the configured claim, else
// the first present fallback. A present claim of the wrong type refuses the
// token.
func clientIDClaim(claims map[string]any, configured string) (string, error) {
	if s, present, err := clientIDFrom(claims, configured); err != nil || present {
		return s, err
	}
	for _, name := range clientIDFallbacks {
		if s, present, err := clientIDFrom(claims, name); err != nil || present {
			return s, err
		}
	}
	return "", nil
}

// clientIDFrom reads one client id claim (keyClaim); the error detail is
// built only when the claim is present.
func clientIDFrom(claims map[string]any, name string) (string, bool, error) {
	if _, present := claims[name]; !present {
		return "", false, nil
	}
	return keyClaim(claims, name, name+" (client id)")
}

// applyRoles reads the roles at path into p.Roles and, for a path other
// than "roles", makes p.Claims["roles"] say the same.
func applyRoles(p *Principal, path ClaimPath) error {
	roles, err := readRoles(p.Claims, path)
	if err != nil {
		return err
	}
	p.Roles = roles
	if len(path) == 0 || path.isDefaultRoles() {
		return nil
	}
	if roles == nil {
		delete(p.Claims, "roles")
		return nil
	}
	vals := make([]any, len(roles))
	for i, r := range roles {
		vals[i] = r
	}
	p.Claims["roles"] = vals
	return nil
}

// UserKey builds the stable user key namespace|org|userID. '%' and '|' in
// the parts are percent-escaped so distinct triples never collide.
func UserKey(namespace, org, userID string) string {
	return escapeKeyPart(namespace) + "|" + escapeKeyPart(org) + "|" + escapeKeyPart(userID)
}

func escapeKeyPart(s string) string {
	if !strings.ContainsAny(s, "%|") {
		return s
	}
	return strings.NewReplacer("%", "%25", "|", "%7C").Replace(s)
}

// parseAct returns the outermost actor and the nested prior actors. Each
// actor's subject is qualified by the namespace of its issuer (the act
// claim's iss, else tokenIss); see subjectSpace.qualifyActor.
func parseAct(ss *subjectSpace, tokenIss string, v any) (*Actor, []Actor, error) {
	var actors []Actor
	for depth := 0; v != nil; depth++ {
		if depth >= maxActDepth {
			return nil, nil, tokenErr(ReasonInvalidClaim, "act nesting too deep")
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, nil, tokenErr(ReasonInvalidClaim, "act: must be an object, not "+jsonKind(v))
		}
		var a Actor
		var err error
		if a.Subject, _, err = keyClaim(m, "sub", "act.sub"); err != nil {
			return nil, nil, err
		}
		if a.ClientID, _, err = keyClaim(m, "client_id", "act.client_id"); err != nil {
			return nil, nil, err
		}
		if a.Subject == "" && a.ClientID == "" {
			return nil, nil, tokenErr(ReasonInvalidClaim, "act without sub or client_id")
		}
		if raw, present := m["iss"]; present {
			if a.Issuer = stringValue(raw); a.Issuer == "" {
				return nil, nil, tokenErr(ReasonInvalidClaim, "act.iss: must be a non-empty string")
			}
		}
		if a.Subject != "" {
			q, err := ss.qualifyActor(tokenIss, a.Issuer, a.Subject)
			if err != nil {
				return nil, nil, err
			}
			a.QualifiedSubject = q
		}
		actors = append(actors, a)
		v = m["act"]
	}
	if len(actors) == 0 {
		return nil, nil, tokenErr(ReasonInvalidClaim, "act")
	}
	cur := actors[0]
	var chain []Actor
	if len(actors) > 1 {
		chain = actors[1:]
	}
	return &cur, chain, nil
}

// AudienceContains reports whether p's audience contains resource, compared
// canonically: scheme and host are case-insensitive, everything else
// (port, path, trailing slash, query) must match exactly.
func AudienceContains(p *Principal, resource string) bool {
	if p == nil || resource == "" {
		return false
	}
	for _, a := range p.Audience { // fast path: byte-identical, no allocation
		if a == resource {
			return true
		}
	}
	want := canonicalResource(resource)
	for _, a := range p.Audience {
		if a != "" && canonicalResource(a) == want {
			return true
		}
	}
	return false
}

func canonicalResource(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return s
	}
	// Rebuild from the original text: lowercase "scheme://host" and keep
	// the rest byte for byte (url.String would re-encode the path).
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	return strings.ToLower(s[:i+3+end]) + rest[end:]
}

// PrincipalFromClaims builds the Principal that cfg would produce for a token
// with these claims, WITHOUT verifying any signature, expiry or audience. It
// is for offline tooling (`mcpauthz eval`) only; the hot path uses
// [Verifier.VerifyToken]. The claims' "iss" must name a configured issuer.
//
// Decode the claims with [DecodeClaims] so numbers keep their digits. Other
// numbers are converted first: a float64 that is an integer of at most 2^53
// in magnitude counts as that integer, any other float64 is not an integer
// (so a user id or org holding it is refused rather than rounded).
func PrincipalFromClaims(cfg Config, claims map[string]any) (*Principal, error) {
	cfg = cfg.withDefaults()
	claims, err := exactClaims(claims)
	if err != nil {
		return nil, tokenErr(ReasonMalformed, err.Error())
	}
	iss, _ := claims["iss"].(string)
	for _, ic := range cfg.Issuers {
		if ic.Issuer == iss {
			exp, _ := numericDate(claims["exp"])
			return buildPrincipal(newSubjectSpace(cfg.Issuers), ic, claims, exp)
		}
	}
	return nil, tokenErr(ReasonUnknownIssuer, "")
}
