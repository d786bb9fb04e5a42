package mcp

import (
	"encoding/base64"
	"encoding/json"
)

// batch parses a top-level array of messages at p.i.
func (p *parser) batch(ver string) ([]Message, *Error) {
	p.i++ // '['
	p.skipWS()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		return nil, invalidReq("empty_batch", "empty JSON-RPC batch")
	}
	var msgs []Message
	for {
		p.skipWS()
		if p.i >= len(p.data) {
			return nil, p.eof()
		}
		if p.data[p.i] != '{' {
			if _, err := p.value(1, modeGeneric, nil); err != nil {
				return nil, err
			}
			return nil, invalidReq("invalid_request", "batch element is not a JSON object")
		}
		var f fields
		if _, err := p.object(2, modeMessage, &f); err != nil {
			return nil, err
		}
		msgs = append(msgs, Message{})
		if err := p.build(&f, ver, &msgs[len(msgs)-1]); err != nil {
			return nil, err
		}
		p.skipWS()
		if p.i >= len(p.data) {
			return nil, p.eof()
		}
		if p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.data[p.i] != ']' {
			return nil, p.syntax()
		}
		p.i++
		return msgs, nil
	}
}

func (p *parser) raw(s span) json.RawMessage {
	if s.typ == tAbsent {
		return nil
	}
	return json.RawMessage(p.data[s.start:s.end:s.end])
}

// build turns the captured fields of one message object into m. A refusal
// carries the message id when that id is a string or an integer.
func (p *parser) build(f *fields, ver string, m *Message) *Error {
	var id json.RawMessage
	switch f.id.typ {
	case tString, tInt, tNull:
		id = p.raw(f.id)
	}
	err := p.buildMessage(f, ver, id, m)
	if err != nil && (f.id.typ == tString || f.id.typ == tInt) {
		err.ID = id
	}
	return err
}

// buildMessage checks the JSON-RPC envelope (jsonrpc, id, _meta protocol
// version) and builds m as a response or as a request or notification.
func (p *parser) buildMessage(f *fields, ver string, id json.RawMessage, m *Message) *Error {
	if f.jsonrpc.typ != tString || string(p.rawString(f.jsonrpc)) != "2.0" {
		return invalidReq("bad_jsonrpc_version", `jsonrpc must be exactly "2.0"`)
	}
	switch f.id.typ {
	case tAbsent, tString, tInt, tNull:
	default:
		return invalidReq("invalid_id", "id must be a string or an integer")
	}
	if f.metaVersion.typ != tAbsent && !p.probe {
		if f.metaVersion.typ != tString || string(p.rawString(f.metaVersion)) != ver {
			return headerMismatch("params._meta protocol version differs from the effective protocol version")
		}
	}
	if f.method.typ == tAbsent {
		if err := checkResponse(f); err != nil {
			return err
		}
		*m = Message{Kind: KindResponse, ID: id}
		return nil
	}
	return p.buildRequest(f, id, m)
}

// checkResponse checks a message without a method, which must be a response.
func checkResponse(f *fields) *Error {
	if f.id.typ == tAbsent {
		return invalidReq("invalid_request", "message has neither method nor id")
	}
	if f.params.typ != tAbsent {
		return invalidReq("invalid_request", "response must not have params")
	}
	switch {
	case f.result.typ != tAbsent && f.err.typ != tAbsent:
		return invalidReq("invalid_response", "response has both result and error")
	case f.result.typ == tAbsent && f.err.typ == tAbsent:
		return invalidReq("invalid_response", "response has neither result nor error")
	case f.err.typ != tAbsent && f.err.typ != tObject:
		return invalidReq("invalid_response", "response error must be an object")
	case f.id.typ == tNull && f.err.typ == tAbsent:
		return invalidReq("invalid_id", "null id is only allowed in error responses")
	}
	return nil
}

// buildRequest builds m as a request (with an id) or a notification, then
// checks the params of the methods whose params name what is accessed.
func (p *parser) buildRequest(f *fields, id json.RawMessage, m *Message) *Error {
	if f.method.typ != tString {
		return invalidReq("invalid_method", "method must be a string")
	}
	if f.result.typ != tAbsent || f.err.typ != tAbsent {
		return invalidReq("invalid_request", "request must not have result or error")
	}
	kind := KindNotification
	if f.id.typ != tAbsent {
		if f.id.typ == tNull {
			return invalidReq("invalid_id", "request id must not be null")
		}
		kind = KindRequest
	}
	mb := p.rawString(f.method)
	if len(mb) == 0 {
		return invalidReq("invalid_method", "method must not be empty")
	}
	method := internMethod(mb)
	if f.params.typ != tAbsent && f.params.typ != tObject {
		return invalidParams("invalid_params", "params must be an object")
	}
	*m = Message{Kind: kind, ID: id, Method: method, Params: p.raw(f.params)}

	switch method {
	case "tools/call", "prompts/get":
		return p.namedParams(f, m)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return p.uriParams(f, m)
	case "completion/complete":
		return p.completionParams(f, m)
	}
	return nil
}

// namedParams sets m.Name and m.Arguments of tools/call and prompts/get.
func (p *parser) namedParams(f *fields, m *Message) *Error {
	if f.params.typ != tObject {
		return invalidParams("invalid_params", m.Method+" requires params")
	}
	if f.name.typ != tString {
		return invalidParams("invalid_name", m.Method+" params.name must be a string")
	}
	m.Name = string(p.rawString(f.name))
	if m.Method == "tools/call" && !ValidToolName(m.Name) {
		return invalidParams("invalid_tool_name", "tool name must be 1-128 characters of [A-Za-z0-9_.-]")
	}
	if m.Method == "prompts/get" && m.Name == "" {
		return invalidParams("invalid_name", "prompt name must not be empty")
	}
	switch f.arguments.typ {
	case tAbsent:
	case tObject:
		m.Arguments = p.raw(f.arguments)
	default:
		return invalidParams("invalid_arguments", "params.arguments must be an object")
	}
	return nil
}

// uriParams sets m.URI of resources/read, resources/subscribe and
// resources/unsubscribe.
func (p *parser) uriParams(f *fields, m *Message) *Error {
	if f.params.typ != tObject {
		return invalidParams("invalid_params", m.Method+" requires params")
	}
	if f.uri.typ != tString {
		return invalidParams("invalid_uri", m.Method+" params.uri must be a string")
	}
	m.URI = string(p.rawString(f.uri))
	if m.URI == "" {
		return invalidParams("invalid_uri", "params.uri must not be empty")
	}
	return nil
}

// completionParams sets m.Name or m.URI of completion/complete from
// params.ref.
func (p *parser) completionParams(f *fields, m *Message) *Error {
	if f.params.typ != tObject || f.ref.typ != tObject {
		return invalidParams("invalid_params", "completion/complete requires params.ref")
	}
	if f.refType.typ != tString {
		return invalidParams("invalid_params", "params.ref.type must be a string")
	}
	switch string(p.rawString(f.refType)) {
	case "ref/prompt":
		if f.refName.typ != tString || f.refURI.typ != tAbsent {
			return invalidParams("invalid_params", "ref/prompt needs a string name and no uri")
		}
		m.Name = string(p.rawString(f.refName))
	case "ref/resource":
		if f.refURI.typ != tString || f.refName.typ != tAbsent {
			return invalidParams("invalid_params", "ref/resource needs a string uri and no name")
		}
		m.URI = string(p.rawString(f.refURI))
	default:
		return invalidParams("invalid_params", "unknown params.ref.type")
	}
	return nil
}

// mirroredName returns the body value Mcp-Name mirrors for m, if any.
func mirroredName(m *Message) (string, bool) {
	switch m.Method {
	case "tools/call", "prompts/get":
		return m.Name, true
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return m.URI, true
	}
	return "", false
}

// checkHeaders enforces that Mcp-Method and Mcp-Name agree with m. In the
// stateless protocol they are required; in older versions they are optional
// but must still agree when present.
func checkHeaders(in *Input, m *Message, ver string) *Error {
	required := stateless(ver)
	if in.HeaderMethod == nil {
		if required {
			return headerMismatch("Mcp-Method header is required")
		}
	} else {
		v, ok := decodeHeader(*in.HeaderMethod)
		if !ok {
			return headerMismatch("Mcp-Method header has invalid base64")
		}
		if m.Kind == KindResponse || v != m.Method {
			return headerMismatch("Mcp-Method header does not match the body")
		}
	}
	want, mirrored := mirroredName(m)
	if in.HeaderName == nil {
		if required && mirrored {
			return headerMismatch("Mcp-Name header is required for this method")
		}
		return nil
	}
	v, ok := decodeHeader(*in.HeaderName)
	if !ok {
		return headerMismatch("Mcp-Name header has invalid base64")
	}
	if !mirrored || v != want {
		return headerMismatch("Mcp-Name header does not match the body")
	}
	return nil
}

// decodeHeader decodes an MCP header value: "=?base64?<b64>?=" (lowercase,
// case-sensitive markers; standard alphabet, padding optional) is decoded,
// anything else is taken literally.
func decodeHeader(v string) (string, bool) {
	const pre, suf = "=?base64?", "?="
	if len(v) < len(pre)+len(suf) || v[:len(pre)] != pre || v[len(v)-len(suf):] != suf {
		return v, true
	}
	b64 := v[len(pre) : len(v)-len(suf)]
	for n := 0; n < 2 && len(b64) > 0 && b64[len(b64)-1] == '='; n++ {
		b64 = b64[:len(b64)-1]
	}
	for i := 0; i < len(b64); i++ {
		if b64[i] == '\r' || b64[i] == '\n' { // the decoder would skip them
			return "", false
		}
	}
	out, err := base64.RawStdEncoding.Strict().DecodeString(b64)
	if err != nil {
		return "", false
	}
	return string(out), true
}

// internMethod returns method names as constant strings when known, to
// avoid an allocation.
func internMethod(b []byte) string {
	switch string(b) {
	case "tools/call":
		return "tools/call"
	case "tools/list":
		return "tools/list"
	case "resources/read":
		return "resources/read"
	case "resources/list":
		return "resources/list"
	case "resources/templates/list":
		return "resources/templates/list"
	case "resources/subscribe":
		return "resources/subscribe"
	case "resources/unsubscribe":
		return "resources/unsubscribe"
	case "prompts/get":
		return "prompts/get"
	case "prompts/list":
		return "prompts/list"
	case "completion/complete":
		return "completion/complete"
	case "initialize":
		return "initialize"
	case "ping":
		return "ping"
	case "logging/setLevel":
		return "logging/setLevel"
	case "notifications/initialized":
		return "notifications/initialized"
	case "notifications/cancelled":
		return "notifications/cancelled"
	case "notifications/progress":
		return "notifications/progress"
	case "notifications/roots/list_changed":
		return "notifications/roots/list_changed"
	}
	return string(b)
}
