package policy

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// DecisionVersion names the decision document contract described on Decision.
const DecisionVersion = "mcpauthz.decision/v1"

// Reason codes set by the engine itself.
const (
	ReasonUndefined = "policy_undefined" // the query produced no result
	ReasonDenied    = "policy_denied"    // the policy denied without giving a reason
)

// ErrBadDecision is wrapped by errors about a malformed policy result.
// Callers must deny (fail closed) on any Evaluate error.
var ErrBadDecision = errors.New("policy: bad decision")

// Decision is the decoded policy result.
//
// The query result may be a boolean (allow/deny) or an object. Object keys
// (DecisionVersion):
//
//	allowed / allow             bool (OPA-Envoy / mcpauthz; if both, they must agree; one is required)
//	reason                      string (short code, usable as a metric label)
//	message                     string (human-readable, for the JSON-RPC error)
//	http_status                 int 100..599
//	headers                     object string->string: upstream on allow, response on deny
//	body                        string (denial body)
//	request_headers_to_remove   array of strings
//	response_headers_to_add     object string->string
//	required_scopes             array of strings
//	scopes                      array of strings (downstream scopes granted for this call)
//	credential                  string (credential mode chosen by the policy)
//
// Unknown keys are ignored. A wrong type for a known key is an error.
type Decision struct {
	Allow                  bool
	Reason                 string
	Message                string
	HTTPStatus             int
	Headers                map[string]string
	Body                   string
	RequestHeadersToRemove []string
	ResponseHeadersToAdd   map[string]string
	RequiredScopes         []string
	Scopes                 []string
	Credential             string
	Revision               string
}

func badDecision(key, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadDecision, key, fmt.Sprintf(format, args...))
}

// decodeDecision converts the query result value to a Decision without a JSON round trip.
func decodeDecision(v ast.Value) (Decision, error) {
	var d Decision
	switch v := v.(type) {
	case ast.Boolean:
		d.Allow = bool(v)
		if !d.Allow {
			d.Reason = ReasonDenied
		}
		return d, nil
	case ast.Object:
		return decodeObject(v)
	default:
		return d, fmt.Errorf("%w: result must be a boolean or an object, got %s", ErrBadDecision, ast.ValueName(v))
	}
}

func decodeObject(obj ast.Object) (Decision, error) {
	var (
		d                 Decision
		allowed, allow    *bool
		err               error
		reasonSet         bool
		allowedB, allowB  bool
		firstErrorOnField error
	)
	obj.Foreach(func(k, val *ast.Term) {
		if firstErrorOnField != nil {
			return
		}
		key, ok := k.Value.(ast.String)
		if !ok {
			return // non-string keys cannot be part of the contract
		}
		switch string(key) {
		case "allowed":
			allowedB, err = boolOf("allowed", val.Value)
			allowed = &allowedB
		case "allow":
			allowB, err = boolOf("allow", val.Value)
			allow = &allowB
		case "reason":
			d.Reason, err = stringOf("reason", val.Value)
			reasonSet = true
		case "message":
			d.Message, err = stringOf("message", val.Value)
		case "http_status":
			d.HTTPStatus, err = statusOf(val.Value)
		case "headers":
			d.Headers, err = stringMapOf("headers", val.Value)
		case "body":
			d.Body, err = stringOf("body", val.Value)
		case "request_headers_to_remove":
			d.RequestHeadersToRemove, err = stringsOf("request_headers_to_remove", val.Value)
		case "response_headers_to_add":
			d.ResponseHeadersToAdd, err = stringMapOf("response_headers_to_add", val.Value)
		case "required_scopes":
			d.RequiredScopes, err = stringsOf("required_scopes", val.Value)
		case "scopes":
			d.Scopes, err = stringsOf("scopes", val.Value)
		case "credential":
			d.Credential, err = stringOf("credential", val.Value)
		}
		if err != nil {
			firstErrorOnField = err
		}
	})
	if firstErrorOnField != nil {
		return Decision{}, firstErrorOnField
	}
	switch {
	case allowed != nil && allow != nil && *allowed != *allow:
		return Decision{}, fmt.Errorf("%w: allow (%t) and allowed (%t) disagree", ErrBadDecision, *allow, *allowed)
	case allowed != nil:
		d.Allow = *allowed
	case allow != nil:
		d.Allow = *allow
	default:
		return Decision{}, fmt.Errorf("%w: object has neither allow nor allowed", ErrBadDecision)
	}
	if !d.Allow && (!reasonSet || d.Reason == "") {
		d.Reason = ReasonDenied
	}
	return d, nil
}

func boolOf(key string, v ast.Value) (bool, error) {
	b, ok := v.(ast.Boolean)
	if !ok {
		return false, badDecision(key, "want boolean, got %s", ast.ValueName(v))
	}
	return bool(b), nil
}

func stringOf(key string, v ast.Value) (string, error) {
	s, ok := v.(ast.String)
	if !ok {
		return "", badDecision(key, "want string, got %s", ast.ValueName(v))
	}
	return string(s), nil
}

func statusOf(v ast.Value) (int, error) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, badDecision("http_status", "want integer, got %s", ast.ValueName(v))
	}
	i, ok := n.Int()
	if !ok || i < 100 || i > 599 {
		return 0, badDecision("http_status", "want integer 100..599, got %s", n.String())
	}
	return i, nil
}

// stringsOf accepts an array or a set of strings.
func stringsOf(key string, v ast.Value) ([]string, error) {
	var (
		out []string
		err error
	)
	add := func(t *ast.Term) {
		if err != nil {
			return
		}
		s, ok := t.Value.(ast.String)
		if !ok {
			err = badDecision(key, "want array of strings, found %s element", ast.ValueName(t.Value))
			return
		}
		out = append(out, string(s))
	}
	switch v := v.(type) {
	case *ast.Array:
		out = make([]string, 0, v.Len())
		v.Foreach(add)
	case ast.Set:
		out = make([]string, 0, v.Len())
		v.Sorted().Foreach(add) // sorted: deterministic output
	default:
		return nil, badDecision(key, "want array of strings, got %s", ast.ValueName(v))
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func stringMapOf(key string, v ast.Value) (map[string]string, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, badDecision(key, "want object of strings, got %s", ast.ValueName(v))
	}
	out := make(map[string]string, obj.Len())
	var err error
	obj.Foreach(func(k, val *ast.Term) {
		if err != nil {
			return
		}
		ks, ok1 := k.Value.(ast.String)
		vs, ok2 := val.Value.(ast.String)
		if !ok1 || !ok2 {
			err = badDecision(key, "want object of strings, found %s: %s", ast.ValueName(k.Value), ast.ValueName(val.Value))
			return
		}
		out[string(ks)] = string(vs)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
