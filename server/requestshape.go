package server

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/server/mcp"
)

// This file holds the checks that make sure mcpauthz decides on exactly
// what the upstream will act on: the session id as the MCP SDKs read it,
// the path as the upstream routes it, and the Mcp-Param-* mirrors. Where
// Envoy, an SDK and mcpauthz could read a request differently, the request
// is refused.

// sessionID returns the request's MCP session id: the Mcp-Session-Id header
// (Streamable HTTP) or one of the legacy HTTP+SSE query parameters, after
// the decoding the upstream applies. legacy reports the query form. A
// repeated, comma-joined or otherwise ambiguous id is refused (400), never
// bound as a new id: Envoy joins repeated header lines with "," and the
// SDKs read the first one.
func (s *Service) sessionID(r *envoy.Request) (sid string, legacy bool, d *denial) {
	hv, inHeader := r.Headers["mcp-session-id"]
	if inHeader && !validSessionID(hv) {
		return "", false, badSession("Mcp-Session-Id must be sent once, as visible ASCII without commas")
	}
	q, found, err := legacySessionParam(r.Query, s.sessionParams)
	if err != nil {
		return "", false, badSession(err.Error())
	}
	switch {
	case found && inHeader:
		return "", false, badSession("the session id is in both the Mcp-Session-Id header and the query")
	case found:
		return q, true, nil
	}
	return hv, false, nil
}

func badSession(msg string) *denial {
	return &denial{status: http.StatusBadRequest, reason: "ambiguous_session_id", message: msg, code: mcp.CodeInvalidRequest}
}

// validSessionID: MCP session ids are visible ASCII (0x21-0x7E); a comma
// is refused because it is how Envoy joins repeated headers.
func validSessionID(v string) bool {
	if v == "" || len(v) > 1024 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// legacySessionParam finds the legacy session id among the query
// parameters named in names (compared after percent-decoding, ignoring
// case, since SDKs differ in the name they read). Any parameter whose name
// cannot be decoded, a session parameter that is repeated or present under
// two names, or an id that is not a valid session id after decoding ('+'
// decodes to a space, as the SDKs decode it) is an error.
func legacySessionParam(rawQuery string, names []string) (id string, found bool, err error) {
	for q := rawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		dk, derr := url.QueryUnescape(k)
		if derr != nil {
			return "", false, errors.New("the query has a parameter name with invalid percent-encoding")
		}
		if !isSessionParam(dk, names) {
			continue
		}
		if found {
			return "", false, errors.New("the session id appears more than once in the query")
		}
		dv, derr := url.QueryUnescape(v)
		if derr != nil || !validSessionID(dv) {
			return "", false, errors.New("the session id in the query is not a single valid id")
		}
		id, found = dv, true
	}
	return id, found, nil
}

func isSessionParam(k string, names []string) bool {
	for _, n := range names {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

func sessionDenial(err error) *denial {
	switch {
	case errors.Is(err, errSessionOwned):
		return &denial{status: http.StatusForbidden, reason: "session_bound_to_other_principal",
			message: "this MCP session belongs to another principal; start a new session"}
	case errors.Is(err, errSessionQuota):
		return &denial{status: http.StatusTooManyRequests, reason: "session_quota_exceeded",
			message: "too many live MCP sessions for this caller; end or reuse a session"}
	case errors.Is(err, errSessionsFull):
		return &denial{status: http.StatusServiceUnavailable, reason: "session_table_full",
			message: "no new MCP sessions can be bound right now; try again later"}
	}
	return &denial{status: http.StatusServiceUnavailable, reason: "session_store_unavailable",
		message: "the session binding could not be checked; try again"}
}

// paramHeaders collects the Mcp-Param-* headers (nil when none, the
// common case, without allocating).
func paramHeaders(h map[string]string) []mcp.ParamHeader {
	var out []mcp.ParamHeader
	for k, v := range h {
		if len(k) > len(mcp.ParamHeaderPrefix) && strings.HasPrefix(k, mcp.ParamHeaderPrefix) {
			out = append(out, mcp.ParamHeader{Name: k[len(mcp.ParamHeaderPrefix):], Value: v})
		}
	}
	return out
}

// normalizedPath reports whether p is a path every upstream reads the same
// way: no dot segments, no empty segments, no backslash and no
// percent-encoded '/', '\' or '.', which servers and routers decode
// differently. MCP endpoints never need them.
func normalizedPath(p string) bool {
	if strings.Contains(p, "//") || strings.IndexByte(p, '\\') >= 0 {
		return false
	}
	for i := 0; i+2 < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		switch strings.ToLower(p[i+1 : i+3]) {
		case "2f", "5c", "2e":
			return false
		}
	}
	for rest := p; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
