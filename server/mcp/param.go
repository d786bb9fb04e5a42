package mcp

import (
	"bytes"
	"encoding/json"
	"strings"
)

// ParamHeaderPrefix starts the MCP 2026-07-28 (SEP-2243) headers that
// mirror tools/call arguments annotated with x-mcp-header in the tool's
// input schema. Lower-case, as Envoy sends header names.
const ParamHeaderPrefix = "mcp-param-"

// ParamHeader is one Mcp-Param-* request header.
type ParamHeader struct {
	// Name is the part after "mcp-param-", lower-case (header names are
	// case-insensitive).
	Name string
	// Value is the header value as received (the =?base64?…?= sentinel is
	// decoded by Parse).
	Value string
}

// checkParamHeaders enforces that every Mcp-Param-* header agrees with the
// argument it mirrors. mcpauthz does not see the tool's input schema, so the
// argument is the one the configuration declares for the header, or else the single
// top-level argument whose key equals the header name case-insensitively. A
// header whose argument cannot be determined is refused: mcpauthz would
// otherwise pass a value on to the upstream and to intermediaries that it
// never checked against what the body says.
func checkParamHeaders(in *Input, m *Message) *Error {
	var decl map[string]string
	if in.ParamArguments != nil && m.Kind == KindRequest && m.Method == "tools/call" {
		decl = in.ParamArguments(m.Name)
	}
	if len(in.ParamHeaders) == 0 && len(decl) == 0 {
		return nil
	}
	if len(in.ParamHeaders) > 0 && (m.Kind != KindRequest || m.Method != "tools/call") {
		return headerMismatch("Mcp-Param-* headers are allowed only on tools/call")
	}
	var args map[string]json.RawMessage
	if len(m.Arguments) > 0 {
		// Arguments were validated by the strict parser (no duplicate or
		// case-variant keys), so encoding/json reads them the same way.
		if err := json.Unmarshal(m.Arguments, &args); err != nil {
			return headerMismatch("arguments cannot be compared with Mcp-Param-* headers")
		}
	}
	seen := make(map[string]bool, len(in.ParamHeaders))
	for _, h := range in.ParamHeaders {
		if h.Name == "" || !isToken(h.Name) {
			return headerMismatch("Mcp-Param-* header name is not a valid token")
		}
		if seen[h.Name] {
			return headerMismatch("Mcp-Param-" + h.Name + " is repeated")
		}
		seen[h.Name] = true
		if strings.IndexByte(h.Value, ',') >= 0 {
			// Envoy joins repeated header lines with ","; the upstream reads
			// the first line. Such a value is ambiguous: refuse it (a value
			// with a comma can travel base64-encoded).
			return headerMismatch("Mcp-Param-" + h.Name + " is repeated or contains a comma; send it once, base64-encoded if needed")
		}
		v, ok := decodeHeader(h.Value)
		if !ok {
			return headerMismatch("Mcp-Param-" + h.Name + " has invalid base64")
		}
		arg, declared := decl[h.Name]
		if !declared {
			arg, ok = uniqueFoldKey(args, h.Name)
			if !ok {
				return headerMismatch("Mcp-Param-" + h.Name + " mirrors no argument mcpauthz can identify; declare it in the server's param_headers")
			}
		}
		raw, present := args[arg]
		if !present || !paramEqual(raw, v) {
			return headerMismatch("Mcp-Param-" + h.Name + " does not match the body")
		}
	}
	// A declared mirror must be sent whenever its argument is present
	// (SEP-2243: clients MUST mirror annotated arguments).
	for name, arg := range decl {
		if seen[name] {
			continue
		}
		if raw, present := args[arg]; present && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return headerMismatch("Mcp-Param-" + name + " is required: the argument it mirrors is present")
		}
	}
	return nil
}

// paramEqual compares an argument's JSON value with a decoded header value:
// strings by their decoded text, integers and booleans by their JSON text.
// Objects, arrays, null and non-integer numbers never match.
func paramEqual(raw json.RawMessage, v string) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		return json.Unmarshal(raw, &s) == nil && s == v
	case c == 't' || c == 'f':
		return string(raw) == v
	case c == '-' || c >= '0' && c <= '9':
		return bytes.IndexAny(raw, ".eE") < 0 && string(raw) == v
	}
	return false
}

// uniqueFoldKey returns the one key of args equal to name ignoring ASCII
// case; false when none or several match.
func uniqueFoldKey(args map[string]json.RawMessage, name string) (string, bool) {
	found, n := "", 0
	for k := range args {
		if strings.EqualFold(k, name) {
			found, n = k, n+1
		}
	}
	return found, n == 1
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}
