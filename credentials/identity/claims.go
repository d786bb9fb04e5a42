package identity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
	"go.yaml.in/yaml/v3"
)

// Exact claims.
//
// Token claims keep their exact JSON values: payloads and introspection
// responses are decoded with json.Decoder.UseNumber, so every number is a
// json.Number holding the issuer's digits (9007199254740993 stays
// 9007199254740993; a float64 would make it ...992). Principal.Claims
// carries them to policy unchanged.
//
// The claims that name someone (user id, org, client id, act.sub,
// act.client_id) must be strings, or integers, which are rendered exactly
// in decimal whatever their size. Anything else (a fraction or exponent,
// a bool, an object, an array, null) refuses the token with invalid_claim
// naming the claim: a key built from a rounded or stringified value could
// name someone else.
//
// Scopes: a space-separated scope string is scope-tokens separated by
// single U+0020 (RFC 6749 section 3.3); any other separator (tab, NBSP,
// ideographic space, ...), a control character, an empty token or a
// character outside the scope-token grammar refuses the token. Arrays (scp,
// or a scope claim written as an array) must hold scope-tokens only.
//
// Roles: the roles claim (a path, default "roles") must be an array of
// strings; an object, a string or mixed array refuses the token.

// DecodeClaims decodes a JWT payload or an introspection response: one JSON
// object, numbers kept exactly as json.Number, nothing after it. Tools that
// hand claims to [PrincipalFromClaims] should decode them with it.
func DecodeClaims(b []byte) (map[string]any, error) {
	// The decoded strings point into the copy (claimsjson.go).
	return decodeClaimsOwned(bytes.Clone(b))
}

// exactClaims returns claims with every number as a json.Number, for claims
// built by Go code or decoded without UseNumber ([PrincipalFromClaims]). A
// float64 that is an integer of at most 2^53 in magnitude becomes that
// integer; any other float64 (which may already have lost digits) becomes
// its shortest 'g' form, which is not an integer, so a key claim holding it
// is refused rather than rounded. Values of other Go types (such as
// []string) go through a JSON round trip.
func exactClaims(m map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		e, err := exactValue(v)
		if err != nil {
			return nil, fmt.Errorf("identity: claim %q: %w", k, err)
		}
		out[k] = e
	}
	return out, nil
}

func exactValue(v any) (any, error) {
	switch t := v.(type) {
	case nil, string, bool, json.Number:
		return t, nil
	case float64:
		return floatNumber(t), nil
	case float32:
		return floatNumber(float64(t)), nil
	case int:
		return json.Number(strconv.FormatInt(int64(t), 10)), nil
	case int64:
		return json.Number(strconv.FormatInt(t, 10)), nil
	case int32:
		return json.Number(strconv.FormatInt(int64(t), 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(t, 10)), nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			x, err := exactValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case map[string]any:
		return exactClaims(t)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

const maxExactFloat = 1 << 53

func floatNumber(f float64) json.Number {
	if f == math.Trunc(f) && math.Abs(f) <= maxExactFloat {
		return json.Number(strconv.FormatInt(int64(f), 10))
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

// exactInteger renders n when it is a JSON integer (optional minus, digits,
// no fraction or exponent) of any size; "-0" is "0".
func exactInteger(n json.Number) (string, bool) {
	s := string(n)
	digits := strings.TrimPrefix(s, "-")
	if digits == "" {
		return "", false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return "", false
		}
	}
	if len(digits) <= 18 {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(i, 10), true
	}
	i, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return "", false
	}
	return i.String(), true
}

// keyClaim reads an identity claim used in keys: a string, or an integer
// rendered exactly. present reports whether the claim exists at all; an
// existing claim of another type is an invalid_claim TokenError naming
// field.
func keyClaim(m map[string]any, name, field string) (s string, present bool, err error) {
	v, present := m[name]
	if !present {
		return "", false, nil
	}
	switch t := v.(type) {
	case string:
		return t, true, nil
	case json.Number:
		if s, ok := exactInteger(t); ok {
			return s, true, nil
		}
		return "", true, tokenErr(ReasonInvalidClaim, field+": a number that is not an integer")
	}
	return "", true, tokenErr(ReasonInvalidClaim, field+": must be a string or an integer, not "+jsonKind(v))
}

// jsonKind names the JSON type of a decoded value, for error details.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// stringValue returns v when it is a JSON string, "" otherwise. It reads
// claims that only steer classification (gty, idtyp, preferred_username):
// a claim of another type simply does not match.
func stringValue(v any) string {
	s, _ := v.(string)
	return s
}

// parseScopeString splits an RFC 6749 scope string: scope-tokens separated
// by single U+0020. "" is no scopes.
func parseScopeString(s, field string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	out := make([]string, 0, strings.Count(s, " ")+1)
	for tok := range strings.SplitSeq(s, " ") {
		if !urlcheck.ScopeToken(tok) {
			return nil, tokenErr(ReasonInvalidClaim, field+": scope tokens must be separated by single spaces (U+0020) and use RFC 6749 scope characters")
		}
		out = append(out, tok)
	}
	return out, nil
}

// parseScopes reads a scope claim: a space-separated string or an array of
// scope-tokens. Absent (nil) gives no scopes.
func parseScopes(v any, field string) ([]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return parseScopeString(t, field)
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := e.(string)
			if !ok || !urlcheck.ScopeToken(s) {
				return nil, tokenErr(ReasonInvalidClaim, field+": array elements must be scope tokens (strings without spaces)")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, tokenErr(ReasonInvalidClaim, field+": must be a space-separated string or an array of strings, not "+jsonKind(v))
}

// stringArray reads an array of strings; ok is false for anything else.
func stringArray(v any) ([]string, bool) {
	t, ok := v.([]any)
	if !ok {
		return nil, false
	}
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

// stringOrArray reads a string or an array of strings (aud, agent claim
// values); absent gives nil.
func stringOrArray(v any) ([]string, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case string:
		return []string{t}, true
	}
	return stringArray(v)
}

// ClaimPath names a claim, possibly nested in objects: ["realm_access",
// "roles"] is Keycloak's realm roles. In YAML it is written as a dotted
// string ("realm_access.roles") or, for claim names that contain dots
// (Auth0's namespaced claims), as a list of names
// (["https://example.com/roles"]).
type ClaimPath []string

// ParseClaimPath splits a dotted path; every segment must be non-empty.
func ParseClaimPath(s string) (ClaimPath, error) {
	if s == "" {
		return nil, errors.New("empty claim path")
	}
	p := ClaimPath(strings.Split(s, "."))
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p ClaimPath) validate() error {
	if len(p) == 0 {
		return errors.New("empty claim path")
	}
	if len(p) > 8 {
		return errors.New("claim path deeper than 8")
	}
	for _, s := range p {
		if s == "" || strings.ContainsFunc(s, urlcheck.IsControl) {
			return errors.New("claim path segments must be non-empty, without control characters")
		}
	}
	return nil
}

// UnmarshalYAML accepts a dotted string or a list of claim names.
func (p *ClaimPath) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() != "!!str" {
			return fmt.Errorf("line %d: claim path must be a string such as realm_access.roles or a list of claim names", n.Line)
		}
		q, err := ParseClaimPath(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*p = q
		return nil
	case yaml.SequenceNode:
		q := make(ClaimPath, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode || e.ShortTag() != "!!str" {
				return fmt.Errorf("line %d: claim path list elements must be strings", e.Line)
			}
			q = append(q, e.Value)
		}
		if err := q.validate(); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*p = q
		return nil
	}
	return fmt.Errorf("line %d: claim path must be a string such as realm_access.roles or a list of claim names", n.Line)
}

// MarshalYAML writes the dotted form when no name contains a dot.
func (p ClaimPath) MarshalYAML() (any, error) {
	for _, s := range p {
		if strings.Contains(s, ".") {
			return []string(p), nil
		}
	}
	return p.String(), nil
}

// String renders the path dotted (for messages).
func (p ClaimPath) String() string { return strings.Join(p, ".") }

func (p ClaimPath) isDefaultRoles() bool { return len(p) == 1 && p[0] == "roles" }

// lookup finds the value at p. Absent anywhere along the path is
// (nil, false, nil); a non-object on the way is an error.
func (p ClaimPath) lookup(m map[string]any) (any, bool, error) {
	cur := m
	for i, seg := range p {
		v, ok := cur[seg]
		if !ok {
			return nil, false, nil
		}
		if i == len(p)-1 {
			return v, true, nil
		}
		next, ok := v.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("%s is %s, not an object", ClaimPath(p[:i+1]), jsonKind(v))
		}
		cur = next
	}
	return nil, false, nil
}

// readRoles reads the roles at path: absent gives nil, an array of strings
// gives it, anything else is an invalid_claim TokenError.
func readRoles(claims map[string]any, path ClaimPath) ([]string, error) {
	v, present, err := path.lookup(claims)
	if err != nil {
		return nil, tokenErr(ReasonInvalidClaim, "roles ("+path.String()+"): "+err.Error())
	}
	if !present {
		return nil, nil
	}
	roles, ok := stringArray(v)
	if !ok {
		what := jsonKind(v)
		if _, isArray := v.([]any); isArray {
			what = "an array with a non-string element"
		}
		return nil, tokenErr(ReasonInvalidClaim, "roles ("+path.String()+"): must be an array of strings, not "+what)
	}
	return roles, nil
}
