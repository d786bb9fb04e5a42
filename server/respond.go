package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// JSON-RPC error codes used in denial bodies. -32700/-32600 come from
// JSON-RPC 2.0 and -32020 from MCP 2026-07-28; the others sit in the
// implementation-defined server error range.
// JSON-RPC error codes of mcpauthz's own denials. They sit in the
// implementation-defined server range (-32000..-32099) away from every code
// MCP and the SDKs give a meaning: -32000/-32001 (TypeScript SDK connection
// closed / request timeout), -32001..-32005 (Go SDK unknown, client and
// server closing, rejected), -32002 (MCP resource not found), -32020..-32022
// and -32042 (MCP). A client must not mistake a denial for a transport event.
const (
	codeUnauthorized = -32050
	codeForbidden    = -32051
	codeUnavailable  = -32052
	codeInvalid      = -32600
)

// denial is everything needed to answer a refused request. It is the only
// place internal outcomes turn into Envoy responses.
type denial struct {
	status    int
	reason    string // short code: metric label and audit field
	message   string // shown to the client in the JSON-RPC error
	challenge string // WWW-Authenticate value, if any
	code      int    // JSON-RPC error code
	id        json.RawMessage
	headers   map[string]string // extra headers (policy-supplied)
	body      string            // policy-supplied body replaces the JSON-RPC error
	data      map[string]any    // JSON-RPC error data
	required  []string          // scopes the policy said the operation needs (step-up)
}

func (d *denial) response() *authv3.CheckResponse {
	hdrs := make([]envoy.Header, 0, 3+len(d.headers))
	body := d.body
	if body == "" {
		body = jsonRPCError(d.id, d.code, d.message, d.data)
		hdrs = append(hdrs, envoy.Header{Name: "content-type", Value: "application/json"})
	}
	if d.challenge != "" {
		hdrs = append(hdrs, envoy.Header{Name: "www-authenticate", Value: d.challenge})
	}
	for k, v := range d.headers {
		hdrs = append(hdrs, envoy.Header{Name: k, Value: sanitizeHeaderValue(v)})
	}
	hdrs = append(hdrs, envoy.Header{Name: "cache-control", Value: "no-store"})
	return envoy.Deny(d.status, hdrs, []byte(body))
}

type rpcErrorBody struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcError        `json:"error"`
}

type rpcError struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

func jsonRPCError(id json.RawMessage, code int, msg string, data map[string]any) string {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, err := json.Marshal(rpcErrorBody{JSONRPC: "2.0", ID: id, Error: rpcError{Code: code, Message: msg, Data: data}})
	if err != nil {
		return `{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}`
	}
	return string(b)
}

// insufficientScope builds the RFC 6750 challenge naming every scope the
// operation needs.
func insufficientScope(s *mcpServer, scopes []string) string {
	return `Bearer error="insufficient_scope", scope="` + strings.Join(scopes, " ") +
		`", resource_metadata="` + s.metadataURL + `"`
}

func rpcCodeForStatus(status int) int {
	switch status {
	case http.StatusUnauthorized:
		return codeUnauthorized
	case http.StatusServiceUnavailable:
		return codeUnavailable
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return codeInvalid
	default:
		return codeForbidden
	}
}

// sanitizeHeaderValue keeps a value Envoy will accept: visible ASCII and
// spaces pass, anything else (CR, LF, NUL, non-ASCII) is percent-encoded, so
// a claim can never inject a header.
// identityHeaderValue encodes an identity value for an attribution header:
// as sanitizeHeaderValue, and ',' percent-encoded too, so a value can never
// read as two list elements (or as two joined header lines).
func identityHeaderValue(v string) string {
	if strings.IndexByte(v, ',') < 0 {
		return sanitizeHeaderValue(v)
	}
	return strings.ReplaceAll(sanitizeHeaderValue(v), ",", "%2C")
}

func sanitizeHeaderValue(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(strconv.FormatUint(uint64(c)|0x100, 16)[1:]))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
