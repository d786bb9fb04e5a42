package identity

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Qualified subjects.
//
// The same `sub` from two issuers that do not share a user directory names
// two different people, so the subject mcpauthz hands to upstreams
// (attribution headers, minted tokens, signed attribution) is qualified by
// the issuer's user namespace: "<namespace>/<sub>". An issuer configured
// with subjects_globally_unique keeps its raw sub.
//
// Why no token can take another's qualified subject:
//   - a namespace matches [a-z0-9][a-z0-9._-]* and has no '/', so
//     "<namespace>/<sub>" splits at its first '/' into exactly one
//     (namespace, sub) pair: distinct pairs give distinct strings;
//   - all issuers of one namespace agree on subjects_globally_unique and at
//     most one namespace declares it, so raw subjects come from one user
//     directory only;
//   - an actor whose act claim names an issuer that is not configured is
//     qualified by that issuer itself: "iss:" + url.PathEscape(iss) + "/" +
//     sub (PathEscape escapes '/' and '%', so the form splits uniquely);
//   - a raw subject whose text before its first '/' is a qualifying
//     namespace could be read as "<namespace>/<sub>" and is refused
//     (ambiguous_subject), as is one starting with "spiffe:", the form of
//     mTLS principals' qualified subject (their SPIFFE id, globally unique by
//     construction), or with "iss:"; no namespace contains ':'.

// maxNamespaceLen bounds a user namespace.
const maxNamespaceLen = 64

// spiffeNamespace is the user namespace of mTLS (SPIFFE) principals'
// UserKey; issuers cannot use it.
const spiffeNamespace = "spiffe"

// checkNamespace enforces the user-namespace grammar [a-z0-9][a-z0-9._-]*,
// at most 64 bytes, and refuses the reserved "spiffe".
func checkNamespace(ns string) error {
	if ns == "" {
		return errors.New("must not be empty")
	}
	if len(ns) > maxNamespaceLen {
		return fmt.Errorf("longer than %d bytes", maxNamespaceLen)
	}
	if ns == spiffeNamespace {
		return fmt.Errorf("%q is reserved for mTLS (SPIFFE) principals", spiffeNamespace)
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return errors.New("must match [a-z0-9][a-z0-9._-]* (lowercase, no '/')")
		}
	}
	return nil
}

// QualifySubject is the qualified subject of sub in namespace:
// namespace + "/" + sub. It does not validate its inputs; the Verifier only
// calls it with configured namespaces.
func QualifySubject(namespace, sub string) string { return namespace + "/" + sub }

// subjectScope is how one issuer's subjects are qualified.
type subjectScope struct {
	namespace string
	global    bool // subjects_globally_unique: the raw sub is used
}

// subjectSpace knows how every configured issuer's subjects are qualified.
// It is built once from validated, defaulted configuration and read-only
// afterwards.
type subjectSpace struct {
	byIssuer map[string]subjectScope // by exact iss
	// qualifying holds the namespaces whose subjects are qualified.
	qualifying map[string]bool
}

func newSubjectSpace(issuers []IssuerConfig) *subjectSpace {
	s := &subjectSpace{byIssuer: make(map[string]subjectScope, len(issuers)), qualifying: map[string]bool{}}
	for _, ic := range issuers {
		s.byIssuer[ic.Issuer] = subjectScope{namespace: ic.UserNamespace, global: ic.SubjectsGloballyUnique}
		if !ic.SubjectsGloballyUnique {
			s.qualifying[ic.UserNamespace] = true
		}
	}
	return s
}

// qualify returns the qualified subject of sub under scope, or an
// ambiguous_subject TokenError when a raw (globally unique) sub could be
// mistaken for another issuer's qualified subject or for a SPIFFE id.
// field names the claim for the error detail ("sub", "act.sub").
func (s *subjectSpace) qualify(scope subjectScope, sub, field string) (string, error) {
	if !scope.global {
		return QualifySubject(scope.namespace, sub), nil
	}
	for _, reserved := range []string{"spiffe:", issuerPrefix} {
		if len(sub) >= len(reserved) && strings.EqualFold(sub[:len(reserved)], reserved) {
			return "", tokenErr(ReasonAmbiguousSubject, field+" begins with the reserved "+reserved)
		}
	}
	if prefix, _, ok := strings.Cut(sub, "/"); ok && s.qualifying[prefix] {
		return "", tokenErr(ReasonAmbiguousSubject, field+" begins with a configured user namespace and '/'")
	}
	return sub, nil
}

// issuerPrefix starts the qualified subject of an actor from an issuer
// that is not configured.
const issuerPrefix = "iss:"

// qualifyActor qualifies an actor's subject: by the namespace of actIss when
// it is a configured issuer, by the token issuer's scope when actIss is
// empty, and by actIss itself otherwise.
func (s *subjectSpace) qualifyActor(tokenIss, actIss, sub string) (string, error) {
	iss := actIss
	if iss == "" {
		iss = tokenIss
	}
	if sc, ok := s.byIssuer[iss]; ok {
		return s.qualify(sc, sub, "act.sub")
	}
	return issuerPrefix + url.PathEscape(iss) + "/" + sub, nil
}
