// Package mcp parses MCP Streamable HTTP (and legacy HTTP+SSE) requests the
// way an authorizing proxy must see them: strictly, without I/O and with few
// allocations.
//
// Parse validates the request body with its own single-pass JSON scanner,
// which refuses every construct that lets two JSON readers disagree about a
// message: duplicate keys, keys that differ only in case (Unicode simple case
// folding, as Go's encoding/json matches struct fields), trailing data,
// invalid UTF-8, lone surrogates, invalid escapes and numbers, excessive
// nesting and a leading byte-order mark. It then applies the JSON-RPC 2.0 and
// MCP transport rules of the negotiated protocol version (batches, responses,
// HTTP methods, and the Mcp-Method / Mcp-Name mirror headers, which must agree
// with the body in every version).
//
// All functions are safe for concurrent use; the package has no mutable
// state on the hot path (SupportedVersions is informational and Parse does
// not read it). Values returned by Parse alias Input.Body: the caller must not
// modify the body while the Call is in use.
package mcp

import (
	"encoding/json"
	"strconv"
)

// Protocol versions known to Parse.
const (
	Version20241105 = "2024-11-05"
	Version20250326 = "2025-03-26"
	Version20250618 = "2025-06-18"
	Version20251125 = "2025-11-25"
	Version20260728 = "2026-07-28"

	// DefaultVersion is assumed when the MCP-Protocol-Version header is
	// absent (the specification's backwards-compatibility rule).
	DefaultVersion = Version20250326
)

// SupportedVersions lists the protocol versions Parse accepts, oldest first.
// It is informational: Parse does not read it, so changing it has no effect.
var SupportedVersions = []string{Version20241105, Version20250326, Version20250618, Version20251125, Version20260728}

// JSON-RPC error codes used in Error.Code.
const (
	CodeParseError         = -32700
	CodeInvalidRequest     = -32600
	CodeInvalidParams      = -32602
	CodeServerError        = -32000 // transport-level refusals (405, 415)
	CodeHeaderMismatch     = -32020 // MCP 2026-07-28 HeaderMismatch
	CodeUnsupportedVersion = -32022 // MCP 2026-07-28 UnsupportedProtocolVersion
)

// Kind is the JSON-RPC message kind.
type Kind uint8

// Message kinds.
const (
	KindRequest Kind = iota
	KindNotification
	KindResponse
)

// String returns "request", "notification" or "response".
func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Transport is the MCP HTTP transport a request arrived on.
type Transport uint8

// Transports.
const (
	TransportStreamable Transport = iota // Streamable HTTP (2025-03-26 and later)
	TransportLegacySSE                   // HTTP+SSE POST /messages (2024-11-05)
)

// String returns "streamable" or "legacy_sse".
func (t Transport) String() string {
	switch t {
	case TransportStreamable:
		return "streamable"
	case TransportLegacySSE:
		return "legacy_sse"
	}
	return "transport(" + strconv.Itoa(int(t)) + ")"
}

// Message is one parsed JSON-RPC message. Raw fields are subslices of
// Input.Body, not copies.
type Message struct {
	Kind      Kind
	ID        json.RawMessage // raw JSON id (string or integer; null only for error responses); nil for notifications
	Method    string          // "" for responses
	Name      string          // tools/call params.name; prompts/get params.name; completion/complete params.ref.name
	URI       string          // resources/read|subscribe|unsubscribe params.uri; completion/complete params.ref.uri
	Arguments json.RawMessage // tools/call / prompts/get params.arguments (validated JSON object, or nil)
	Params    json.RawMessage // raw params (validated), nil if absent
}

// Input is what Parse needs from an HTTP request.
type Input struct {
	HTTPMethod      string  // "POST", "GET", "DELETE", ...
	ContentType     string  // request Content-Type header value
	ProtocolVersion string  // MCP-Protocol-Version header ("" = absent)
	HeaderMethod    *string // Mcp-Method header if present
	HeaderName      *string // Mcp-Name header if present
	Legacy          bool    // legacy HTTP+SSE POST /messages?sessionId=... (2024-11-05)
	// ParamHeaders are the request's Mcp-Param-* headers (MCP 2026-07-28).
	ParamHeaders []ParamHeader
	// ParamArguments, when set, returns for a tool the map from lower-case
	// Mcp-Param header name to the top-level argument it mirrors, as the
	// server's configuration declares it (nil when none is declared).
	ParamArguments func(tool string) map[string]string
	Body           []byte
	// Versions, when set, is the server's allow-list of protocol versions
	// (a subset of SupportedVersions); nil allows every supported one.
	Versions []string
	// AllowNewer is a named relaxation: a well-formed version newer than
	// every supported one is let through and parsed by the newest rules
	// mcpauthz knows (Call.RequestedVersion keeps what the client said).
	AllowNewer bool

	probe bool // only the id is wanted (see unsupportedVersion, ProbeID)
}

// Call is a parsed HTTP request.
type Call struct {
	Version string // effective protocol version
	// RequestedVersion is the version the client asked for when it differs
	// from Version: an initialize body's protocolVersion, or a newer header
	// version let through by Input.AllowNewer.
	RequestedVersion string
	Transport        Transport
	Batch            bool
	Messages         []Message // empty for GET/DELETE
}

// Error is returned for every refusal; the server maps it to an HTTP status
// and a JSON-RPC error body. Msg never contains request content.
type Error struct {
	Status int             // HTTP status: 400, 405, 415
	Code   int             // JSON-RPC error code (Code* constants)
	Reason string          // short snake_case code usable as a metric label
	Msg    string          // human readable
	ID     json.RawMessage // the offending message id when known
	Data   map[string]any  // JSON-RPC error data (e.g. supported/requested versions)
}

// Error implements error.
func (e *Error) Error() string {
	return "mcp: " + e.Reason + ": " + e.Msg
}

// ValidToolName reports whether s is 1-128 characters of [A-Za-z0-9_.-].
func ValidToolName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func errorf(status, code int, reason, msg string) *Error {
	return &Error{Status: status, Code: code, Reason: reason, Msg: msg}
}

func parseErr(reason, msg string) *Error { return errorf(400, CodeParseError, reason, msg) }

func invalidReq(reason, msg string) *Error { return errorf(400, CodeInvalidRequest, reason, msg) }

func invalidParams(reason, msg string) *Error { return errorf(400, CodeInvalidParams, reason, msg) }

func headerMismatch(msg string) *Error {
	return errorf(400, CodeHeaderMismatch, "header_mismatch", msg)
}

// version returns the canonical constant for a supported version string.
func canonicalVersion(v string) (string, bool) {
	switch v {
	case Version20241105:
		return Version20241105, true
	case Version20250326:
		return Version20250326, true
	case Version20250618:
		return Version20250618, true
	case Version20251125:
		return Version20251125, true
	case Version20260728:
		return Version20260728, true
	}
	return "", false
}

// batchAllowed reports whether JSON-RPC batches are allowed in version v.
func batchAllowed(v string) bool { return v == Version20241105 || v == Version20250326 }

// stateless reports whether v is the stateless (2026-07-28) protocol.
func stateless(v string) bool { return v == Version20260728 }

// Parse validates an MCP HTTP request and returns its messages. Every
// refusal is an *Error. Parse does no I/O and is safe for concurrent use.
func Parse(in Input) (*Call, error) {
	c, err := parse(&in)
	if err != nil {
		return nil, err
	}
	return c, nil
}

type callOne struct {
	c   Call
	buf [1]Message
}

// parse runs the steps of Parse in order: protocol version and transport,
// HTTP method, body envelope and messages, transport checks per message, and
// the initialize version negotiation.
func parse(in *Input) (*Call, *Error) {
	head, err := negotiateVersion(in)
	if err != nil {
		return nil, err
	}
	switch in.HTTPMethod {
	case "POST":
	case "GET", "DELETE":
		if len(in.ParamHeaders) > 0 {
			return nil, headerMismatch("Mcp-Param-* headers are allowed only on tools/call")
		}
		if in.Legacy || stateless(head.Version) {
			return nil, errorf(405, CodeServerError, "method_not_allowed", "HTTP method not allowed for this protocol version")
		}
		// A GET or DELETE call carries no RequestedVersion.
		return &Call{Version: head.Version, Transport: head.Transport}, nil
	default:
		return nil, errorf(405, CodeServerError, "method_not_allowed", "HTTP method not allowed")
	}
	call, err := parseBody(in, head)
	if err != nil {
		return nil, err
	}
	if err := checkMessages(in, call); err != nil {
		return nil, err
	}
	if m := call.Messages; len(m) == 1 && m[0].Method == "initialize" && m[0].Kind == KindRequest {
		negotiateInitialize(call)
	}
	return call, nil
}

// negotiateVersion returns the effective protocol version, the version the
// client asked for when it differs, and the transport, as the head of the
// Call parse builds.
func negotiateVersion(in *Input) (Call, *Error) {
	if in.Legacy {
		if in.ProtocolVersion != "" && in.ProtocolVersion != Version20241105 {
			return Call{}, errorf(400, CodeUnsupportedVersion, "unsupported_version", "legacy HTTP+SSE transport requires protocol version 2024-11-05")
		}
		return Call{Version: Version20241105, Transport: TransportLegacySSE}, nil
	}
	if in.ProtocolVersion == "" {
		return Call{Version: DefaultVersion, Transport: TransportStreamable}, nil
	}
	v, ok := canonicalVersion(in.ProtocolVersion)
	switch {
	case ok && versionAllowed(in, v):
		return Call{Version: v, Transport: TransportStreamable}, nil
	case !ok && in.AllowNewer && newerVersion(in.ProtocolVersion):
		return Call{Version: latestVersion(in), RequestedVersion: in.ProtocolVersion, Transport: TransportStreamable}, nil
	}
	return Call{}, unsupportedVersion(in)
}

// parseBody checks the content type and parses the POST body: a single
// message object or a batch array, each message built by the JSON-RPC and
// MCP rules of head.Version. The returned Call starts as a copy of head.
func parseBody(in *Input, head Call) (*Call, *Error) {
	if !jsonContentType(in.ContentType) {
		return nil, errorf(415, CodeServerError, "unsupported_content_type", "Content-Type must be application/json")
	}
	body := in.Body
	if len(body) == 0 {
		return nil, parseErr("empty_body", "request body is empty")
	}
	if len(body) >= 3 && body[0] == 0xEF && body[1] == 0xBB && body[2] == 0xBF {
		return nil, parseErr("leading_bom", "body starts with a byte-order mark")
	}
	p := parser{data: body, probe: in.probe}
	p.skipWS()
	if p.i >= len(body) {
		return nil, parseErr("empty_body", "request body is empty")
	}
	switch body[p.i] {
	case '{':
		return p.singleCall(head)
	case '[':
		return p.batchCall(head)
	}
	if _, err := p.value(1, modeGeneric, nil); err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	return nil, invalidReq("invalid_request", "body must be a JSON object or array")
}

// singleCall parses a body that is one message object at p.i; the Call and
// its one Message share an allocation.
func (p *parser) singleCall(head Call) (*Call, *Error) {
	var f fields
	if _, err := p.object(1, modeMessage, &f); err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	one := &callOne{}
	if err := p.build(&f, head.Version, &one.buf[0]); err != nil {
		return nil, err
	}
	one.c = head
	one.c.Messages = one.buf[:]
	return &one.c, nil
}

// batchCall parses a body that is a batch array at p.i.
func (p *parser) batchCall(head Call) (*Call, *Error) {
	msgs, err := p.batch(head.Version)
	if err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if !batchAllowed(head.Version) {
		return nil, invalidReq("batch_not_allowed", "JSON-RPC batches are not allowed in this protocol version")
	}
	call := head
	call.Batch, call.Messages = true, msgs
	return &call, nil
}

// checkMessages applies the transport rules to the parsed messages: no mixed
// batches, no responses in the stateless protocol, and mirror and
// Mcp-Param-* headers that agree with each message.
func checkMessages(in *Input, call *Call) *Error {
	if call.Batch {
		resp := call.Messages[0].Kind == KindResponse
		for i := range call.Messages {
			if (call.Messages[i].Kind == KindResponse) != resp {
				return invalidReq("mixed_batch", "batch mixes responses with requests or notifications")
			}
		}
	}
	for i := range call.Messages {
		m := &call.Messages[i]
		if m.Kind == KindResponse && stateless(call.Version) {
			return withID(invalidReq("response_not_allowed", "JSON-RPC responses are not allowed in this protocol version"), m.ID)
		}
		if err := checkHeaders(in, m, call.Version); err != nil {
			return withID(err, m.ID)
		}
		if call.Batch && len(in.ParamHeaders) > 0 {
			return withID(headerMismatch("Mcp-Param-* headers cannot be checked against a batch"), m.ID)
		}
		if err := checkParamHeaders(in, m); err != nil {
			return withID(err, m.ID)
		}
	}
	return nil
}

// negotiateInitialize applies the protocolVersion in the body of a lone
// initialize request: initialize is judged by the version in its body (the
// header, if any, is the default); an unknown one is ordinary negotiation.
func negotiateInitialize(call *Call) {
	if bv := initializeVersion(call.Messages[0].Params); bv != "" && bv != call.Version {
		if v, ok := canonicalVersion(bv); ok {
			call.Version = v
		} else {
			call.RequestedVersion = bv
		}
	}
}

// initializeVersion returns params.protocolVersion of an initialize request.
func initializeVersion(params json.RawMessage) string {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if len(params) == 0 || json.Unmarshal(params, &p) != nil {
		return ""
	}
	return p.ProtocolVersion
}

func versionAllowed(in *Input, v string) bool {
	if in.Versions == nil {
		return true
	}
	for _, a := range in.Versions {
		if a == v {
			return true
		}
	}
	return false
}

// latestVersion is the newest version the server allows.
func latestVersion(in *Input) string {
	if len(in.Versions) > 0 {
		best := in.Versions[0]
		for _, v := range in.Versions[1:] {
			if v > best {
				best = v
			}
		}
		return best
	}
	return SupportedVersions[len(SupportedVersions)-1]
}

// newerVersion reports a well-formed YYYY-MM-DD version newer than every
// supported one.
func newerVersion(v string) bool {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if i != 4 && i != 7 && (v[i] < '0' || v[i] > '9') {
			return false
		}
	}
	return v > SupportedVersions[len(SupportedVersions)-1]
}

// unsupportedVersion is the -32022 refusal, with the id of the message when
// the body parses under the newest rules, and data.supported / requested.
func unsupportedVersion(in *Input) *Error {
	supported := in.Versions
	if supported == nil {
		supported = SupportedVersions
	}
	e := errorf(400, CodeUnsupportedVersion, "unsupported_version", "unsupported MCP-Protocol-Version")
	e.Data = map[string]any{"supported": supported, "requested": in.ProtocolVersion}
	if in.HTTPMethod == "POST" && len(in.Body) > 0 {
		// Probe with a version whose rules need no mirror headers.
		probe := *in
		probe.ProtocolVersion, probe.Versions, probe.AllowNewer, probe.Legacy = Version20251125, nil, false, false
		probe.HeaderMethod, probe.HeaderName, probe.ParamHeaders, probe.ParamArguments = nil, nil, nil, nil
		probe.probe = true
		if c, err := parse(&probe); err == nil && len(c.Messages) == 1 {
			e.ID = c.Messages[0].ID
		}
	}
	return e
}

// ProbeID returns the id of the single JSON-RPC message in a POST body that
// parses strictly, read the way a refusal needs it (no mirror headers or
// _meta version checks); nil otherwise. It is for answers to requests
// refused before parsing (a 401), so clients can correlate them.
func ProbeID(contentType string, body []byte) json.RawMessage {
	in := Input{HTTPMethod: "POST", ContentType: contentType, ProtocolVersion: Version20251125, Body: body, probe: true}
	c, err := parse(&in)
	if err != nil || len(c.Messages) != 1 {
		return nil
	}
	return c.Messages[0].ID
}

func withID(e *Error, id json.RawMessage) *Error {
	e.ID = id
	return e
}

// jsonContentType reports whether ct is application/json with at most a
// charset=utf-8 parameter (other parameters are tolerated; any other charset
// is refused because the body is validated as UTF-8).
func jsonContentType(ct string) bool {
	i := 0
	for i < len(ct) && ct[i] != ';' {
		i++
	}
	if !asciiEqualFold(trimOWS(ct[:i]), "application/json") {
		return false
	}
	for i < len(ct) {
		i++ // skip ';'
		j := i
		for j < len(ct) && ct[j] != ';' {
			j++
		}
		param := trimOWS(ct[i:j])
		i = j
		if param == "" {
			continue
		}
		eq := -1
		for k := 0; k < len(param); k++ {
			if param[k] == '=' {
				eq = k
				break
			}
		}
		if eq <= 0 {
			return false
		}
		name, val := trimOWS(param[:eq]), trimOWS(param[eq+1:])
		if !asciiEqualFold(name, "charset") {
			continue
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if !asciiEqualFold(val, "utf-8") {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
