package identity

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	Scopes   []string
	Audience []string
	// Actor is the current actor: the outermost `act`, nil if none.
	Actor *Actor
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
// ic.Issuer) with these claims. ss qualifies the subjects.
func buildPrincipal(ss *subjectSpace, ic IssuerConfig, claims map[string]any, exp time.Time) (*Principal, error) {
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, tokenErr(ReasonMissingClaim, "sub")
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
	p.ClientID = stringClaim(claims, ic.Claims.ClientID)
	if _, present := claims[ic.Claims.ClientID]; !present {
		p.ClientID = stringClaim(claims, "azp")
	}
	scopeClaim := ic.Claims.Scope
	if _, present := claims[scopeClaim]; !present {
		scopeClaim = "scp"
	}
	var ok bool
	if p.Scopes, ok = stringList(claims[scopeClaim], true); !ok {
		return nil, tokenErr(ReasonInvalidClaim, "scope")
	}
	if p.Audience, ok = stringList(claims["aud"], false); !ok {
		return nil, tokenErr(ReasonInvalidClaim, "aud")
	}
	p.Org = stringClaim(claims, ic.Claims.Org)

	if act, present := claims["act"]; present {
		actor, chain, err := parseAct(ss, ic.Issuer, act)
		if err != nil {
			return nil, err
		}
		p.Kind, p.Actor, p.Chain = KindAgentForUser, actor, chain
	} else if isAgent(ic.Agent, claims, sub, p.ClientID) {
		p.Kind = KindAgent
	} else {
		p.Kind = KindHuman
	}

	p.UserID = stringClaim(claims, ic.Claims.UserID)
	if p.UserID == "" {
		if p.Kind != KindAgent {
			return nil, tokenErr(ReasonMissingClaim, "user id")
		}
		p.UserID = sub // an agent's own identity
	}
	p.UserKey = UserKey(ic.UserNamespace, p.Org, p.UserID)
	return p, nil
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

func isAgent(ac AgentConfig, claims map[string]any, sub, clientID string) bool {
	if clientID != "" && slices.Contains(ac.ClientIDs, clientID) {
		return true
	}
	if ac.Claim != "" {
		vals, _ := stringList(claims[ac.Claim], false)
		for _, v := range vals {
			if slices.Contains(ac.Values, v) {
				return true
			}
		}
	}
	if ac.SubjectEqualsClientID != nil && *ac.SubjectEqualsClientID && clientID != "" && sub == clientID {
		return true
	}
	gty, _ := claims["gty"].(string)
	return gty == "client-credentials"
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
			return nil, nil, tokenErr(ReasonInvalidClaim, "act")
		}
		a := Actor{
			Subject:  stringClaim(m, "sub"),
			ClientID: stringClaim(m, "client_id"),
			Issuer:   stringClaim(m, "iss"),
		}
		if a.Subject == "" && a.ClientID == "" {
			return nil, nil, tokenErr(ReasonInvalidClaim, "act without sub or client_id")
		}
		if _, present := m["iss"]; present && a.Issuer == "" {
			return nil, nil, tokenErr(ReasonInvalidClaim, "act.iss")
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

// stringClaim returns a string claim; numbers are rendered without
// exponent so numeric user ids work.
func stringClaim(m map[string]any, name string) string {
	switch v := m[name].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// stringList reads a string or an array of strings. A string is split on
// spaces when split is true. Absent (nil) gives an empty list.
func stringList(v any, split bool) ([]string, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case string:
		if split {
			return strings.Fields(t), true
		}
		return []string{t}, true
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
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
func PrincipalFromClaims(cfg Config, claims map[string]any) (*Principal, error) {
	cfg = cfg.withDefaults()
	iss, _ := claims["iss"].(string)
	for _, ic := range cfg.Issuers {
		if ic.Issuer == iss {
			exp, _ := numericDate(claims["exp"])
			return buildPrincipal(newSubjectSpace(cfg.Issuers), ic, claims, exp)
		}
	}
	return nil, tokenErr(ReasonUnknownIssuer, "")
}
