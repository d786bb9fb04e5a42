package policy

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// InputVersion is the value of input.version; bump it on incompatible changes
// to the input document.
const InputVersion = "mcpauthz.input/v1"

// Input is the document policies see as `input`. Its JSON encoding (the json
// tags) is exactly what Rego sees; Evaluate converts it to an AST value by
// hand without a JSON round trip.
type Input struct {
	Version   string    `json:"version"` // InputVersion
	Request   Request   `json:"request"`
	MCP       MCP       `json:"mcp"`
	Principal Principal `json:"principal"`
	Server    Server    `json:"server"`
	// Connection is the caller's stored OAuth connection for this server
	// when its credential is individual (the user's) or service_account
	// with oauth (the organization's); nil (null) otherwise.
	Connection *Connection `json:"connection"`

	// PreparedPrincipal and PreparedServer, when set, replace Principal and
	// Server: they are converted once (per verified token, per configured
	// server) and reused by every evaluation.
	PreparedPrincipal *PreparedPrincipal `json:"-"`
	PreparedServer    *PreparedServer    `json:"-"`
}

// PreparedPrincipal is a Principal held for evaluation. Its converted form
// is built once, by the first evaluation that needs it, and shared by every
// later one; an evaluation answered by the decision cache never builds it,
// so a new caller who looks like an earlier one to the policy costs no
// conversion at all. The form holds what the policy reads (termSlab.
// principal) and is kept for that policy's analysis: after a reload that
// reads other parts it is built again. Safe for concurrent use.
type PreparedPrincipal struct {
	p  Principal
	id uint64 // unique per preparation (decision cache key)
	// conv is the converted principal once built. A principal that cannot
	// be converted (a claim of an unsupported type) stores nothing and
	// fails every evaluation with the conversion's error.
	conv atomic.Pointer[convertedPrincipal]
}

// convertedPrincipal is a principal converted for one inputUse.
type convertedPrincipal struct {
	use  uint64 // inputUse.id
	term *ast.Term
}

// PreparePrincipal holds p for reuse. Nothing is converted yet.
func PreparePrincipal(p Principal) *PreparedPrincipal {
	return &PreparedPrincipal{p: p, id: preparedIDs.Add(1)}
}

// converted returns the principal converted for use, building it when the
// kept form is for another use (or none). Concurrent first uses may both
// build it; both results are equal, the last one stored is kept.
func (pp *PreparedPrincipal) converted(use *inputUse) (*ast.Term, error) {
	if c := pp.conv.Load(); c != nil && c.use == use.id {
		return c.term, nil
	}
	p := &pp.p
	slab := termSlab{terms: util.NewPtrSlice[ast.Term](16 + len(p.Scopes) + 4*len(p.Chain) + readClaimTerms(p.Claims, use))}
	t, err := slab.principal(p, *use)
	if err != nil {
		return nil, err
	}
	pp.conv.Store(&convertedPrincipal{use: use.id, term: t})
	return t, nil
}

// Principal returns the principal as given to PreparePrincipal.
func (pp *PreparedPrincipal) Principal() Principal { return pp.p }

// PreparedServer is a Server converted for evaluation once. Immutable and
// safe for concurrent use.
type PreparedServer struct {
	s    Server
	term *ast.Term
	id   uint64
}

// PrepareServer converts s for reuse.
func PrepareServer(s Server) *PreparedServer {
	slab := termSlab{terms: util.NewPtrSlice[ast.Term](8 + len(s.Scopes) + 2*len(s.Labels))}
	return &PreparedServer{s: s, term: slab.server(&s, allInput), id: preparedIDs.Add(1)}
}

// Server returns the server as given to PrepareServer.
func (ps *PreparedServer) Server() Server { return ps.s }

// Request describes the HTTP request seen by Envoy.
type Request struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"` // RFC 3339 (nano) string in Rego
	Method  string            `json:"method"`
	Scheme  string            `json:"scheme"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"` // sanitized by the caller: no credentials
	// RawHeaders and KeepHeader are the lazy alternative to Headers: when
	// Headers is nil and the policy reads input.request.headers, the
	// headers of RawHeaders that KeepHeader accepts are converted. A policy
	// that never reads headers costs nothing.
	RawHeaders      map[string]string      `json:"-"`
	KeepHeader      func(name string) bool `json:"-"`
	SourcePrincipal string                 `json:"source_principal"`
	Origin          string                 `json:"origin"`
}

// MCP describes the JSON-RPC message(s) carried by the request.
type MCP struct {
	ProtocolVersion string          `json:"protocol_version"`
	Transport       string          `json:"transport"`
	SessionID       string          `json:"session_id"`
	Batch           bool            `json:"batch"`
	BatchSize       int             `json:"batch_size"`
	Kind            string          `json:"kind"` // request|notification|response|stream|end_session
	Method          string          `json:"method"`
	Tool            string          `json:"tool"`
	Prompt          string          `json:"prompt"`
	URI             string          `json:"uri"`
	Arguments       json.RawMessage `json:"arguments"` // JSON object or null
}

// Principal is the authenticated caller.
type Principal struct {
	Authenticated bool           `json:"authenticated"`
	Kind          string         `json:"kind"` // human|agent_for_user|agent|anonymous
	Subject       string         `json:"subject"`
	UserID        string         `json:"user_id"`
	UserKey       string         `json:"user_key"`
	Org           string         `json:"org"`
	Issuer        string         `json:"issuer"`
	ClientID      string         `json:"client_id"`
	Scopes        []string       `json:"scopes"`
	Actor         *Actor         `json:"actor"`
	Chain         []Actor        `json:"chain"`
	SPIFFEID      string         `json:"spiffe_id"`
	Method        string         `json:"method"` // jwt|mtls|none
	Claims        map[string]any `json:"claims"`
}

// Actor is one delegation hop (an RFC 8693 `act` claim).
type Actor struct {
	Subject  string `json:"sub"`
	ClientID string `json:"client_id"`
	Issuer   string `json:"iss"`
}

// Connection is what policy sees of a stored connection: never a token.
type Connection struct {
	Mode   string   `json:"mode"`   // individual | service_account
	Status string   `json:"status"` // NEEDS_AUTHORIZATION, PENDING, AUTHORIZED, EXPIRED, REVOKED, ERROR
	Scopes []string `json:"scopes"` // granted by the provider
}

// Server describes the protected MCP server (from the route's context extensions).
type Server struct {
	ID             string   `json:"id"`
	Resource       string   `json:"resource"`
	Scopes         []string `json:"scopes"`
	CredentialMode string   `json:"credential_mode"`
	// CredentialModes lists every mode the policy may choose
	// (decision.credential), the default first.
	CredentialModes []string          `json:"credential_modes"`
	Labels          map[string]string `json:"labels"`
}

// Object keys are immutable terms shared by all conversions.
var (
	kVersion   = ast.StringTerm("version")
	kRequest   = ast.StringTerm("request")
	kMCP       = ast.StringTerm("mcp")
	kPrincipal = ast.StringTerm("principal")
	kServer    = ast.StringTerm("server")
	kConn      = ast.StringTerm("connection")
	kConnMode  = ast.StringTerm("mode")
	kStatus    = ast.StringTerm("status")

	kID              = ast.StringTerm("id")
	kTime            = ast.StringTerm("time")
	kMethod          = ast.StringTerm("method")
	kScheme          = ast.StringTerm("scheme")
	kHost            = ast.StringTerm("host")
	kPath            = ast.StringTerm("path")
	kHeaders         = ast.StringTerm("headers")
	kSourcePrincipal = ast.StringTerm("source_principal")
	kOrigin          = ast.StringTerm("origin")

	kProtocolVersion = ast.StringTerm("protocol_version")
	kTransport       = ast.StringTerm("transport")
	kSessionID       = ast.StringTerm("session_id")
	kBatch           = ast.StringTerm("batch")
	kBatchSize       = ast.StringTerm("batch_size")
	kKind            = ast.StringTerm("kind")
	kTool            = ast.StringTerm("tool")
	kPrompt          = ast.StringTerm("prompt")
	kURI             = ast.StringTerm("uri")
	kArguments       = ast.StringTerm("arguments")

	kAuthenticated = ast.StringTerm("authenticated")
	kSubject       = ast.StringTerm("subject")
	kUserID        = ast.StringTerm("user_id")
	kUserKey       = ast.StringTerm("user_key")
	kOrg           = ast.StringTerm("org")
	kIssuer        = ast.StringTerm("issuer")
	kClientID      = ast.StringTerm("client_id")
	kScopes        = ast.StringTerm("scopes")
	kActor         = ast.StringTerm("actor")
	kChain         = ast.StringTerm("chain")
	kSPIFFEID      = ast.StringTerm("spiffe_id")
	kClaims        = ast.StringTerm("claims")
	kSub           = ast.StringTerm("sub")
	kIss           = ast.StringTerm("iss")

	kResource        = ast.StringTerm("resource")
	kCredentialMode  = ast.StringTerm("credential_mode")
	kCredentialModes = ast.StringTerm("credential_modes")
	kLabels          = ast.StringTerm("labels")

	nullTerm = ast.NullTerm()

	// mcpKeys are the keys of input.mcp in mcpFieldNames order.
	mcpKeys = []*ast.Term{kProtocolVersion, kTransport, kSessionID, kBatch, kBatchSize,
		kKind, kMethod, kTool, kPrompt, kURI, kArguments}
	// principalKeys are the keys of input.principal in principalFieldNames
	// order.
	principalKeys = []*ast.Term{kAuthenticated, kKind, kSubject, kUserID, kUserKey, kOrg,
		kIssuer, kClientID, kScopes, kActor, kChain, kSPIFFEID, kMethod, kClaims}
)

// internedStrings are immutable terms for the strings most inputs carry:
// message kinds, transports, protocol versions, MCP methods, principal
// kinds and authentication methods.
var internedStrings = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		"request", "notification", "response", "stream", "end_session",
		"streamable_http", "sse", "stdio",
		"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28",
		"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
		"resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
		"completion/complete", "logging/setLevel", "server/discover", "notifications/initialized",
		"notifications/cancelled", "notifications/progress", "notifications/roots/list_changed",
		"human", "agent", "agent_for_user", "anonymous", "jwt", "mtls", "none",
		"GET", "POST", "DELETE", "http", "https",
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// termSlab hands out *ast.Term from one allocation.
type termSlab struct {
	terms []*ast.Term
	i     int
}

func (s *termSlab) next() *ast.Term {
	if s.i < len(s.terms) {
		t := s.terms[s.i]
		s.i++
		return t
	}
	return &ast.Term{}
}

// str returns a term for v; the empty string and the protocol's common
// strings are interned.
func (s *termSlab) str(v string) *ast.Term {
	if v == "" {
		return ast.InternedTerm("")
	}
	if t, ok := internedStrings[v]; ok {
		return t
	}
	t := s.next()
	t.Value = ast.String(v)
	return t
}

func (s *termSlab) obj(kvs ...[2]*ast.Term) *ast.Term {
	t := s.next()
	t.Value = ast.NewObject(kvs...)
	return t
}

// Number of string-valued terms an Input can need from the slab, excluding
// headers, labels, scopes and chain, which are counted per call.
const fixedStrTerms = 40

// toValue converts the input to an ast.Value by hand (no JSON, no reflection
// except for claims values of uncommon Go types).
//
// Parts the policy never references (use) are passed as null (request,
// arguments, headers, labels, connection) or left out (input.mcp and
// input.principal fields, claims it does not name).
func (in *Input) toValue(use inputUse) (ast.Value, error) {
	p := &in.Principal
	n := fixedStrTerms + len(in.Request.Headers) + len(in.Server.Labels) +
		len(p.Scopes) + len(in.Server.Scopes) + 4*len(p.Chain)
	slab := termSlab{terms: util.NewPtrSlice[ast.Term](n)}

	request := nullTerm
	if use.request {
		request = slab.request(&in.Request, use.headers)
	}
	mcp, err := slab.mcp(&in.MCP, use)
	if err != nil {
		return nil, err
	}
	var principal, server *ast.Term
	if in.PreparedPrincipal != nil {
		if principal, err = in.PreparedPrincipal.converted(&use); err != nil {
			return nil, err
		}
	} else if principal, err = slab.principal(p, use); err != nil {
		return nil, err
	}
	if in.PreparedServer != nil {
		server = in.PreparedServer.term
	} else {
		server = slab.server(&in.Server, use)
	}
	conn := nullTerm
	if in.Connection != nil && use.connection {
		conn = slab.connection(in.Connection)
	}
	return ast.NewObject(
		[2]*ast.Term{kVersion, slab.str(in.Version)},
		[2]*ast.Term{kRequest, request},
		[2]*ast.Term{kMCP, mcp},
		[2]*ast.Term{kPrincipal, principal},
		[2]*ast.Term{kServer, server},
		[2]*ast.Term{kConn, conn},
	), nil
}

// request converts input.request; headers says whether the policy reads
// input.request.headers.
func (s *termSlab) request(r *Request, headers bool) *ast.Term {
	var ts string
	if !r.Time.IsZero() {
		ts = r.Time.UTC().Format(time.RFC3339Nano)
	}
	return s.obj(
		[2]*ast.Term{kID, s.str(r.ID)},
		[2]*ast.Term{kTime, s.str(ts)},
		[2]*ast.Term{kMethod, s.str(r.Method)},
		[2]*ast.Term{kScheme, s.str(r.Scheme)},
		[2]*ast.Term{kHost, s.str(r.Host)},
		[2]*ast.Term{kPath, s.str(r.Path)},
		[2]*ast.Term{kHeaders, s.headers(headers, r)},
		[2]*ast.Term{kSourcePrincipal, s.str(r.SourcePrincipal)},
		[2]*ast.Term{kOrigin, s.str(r.Origin)},
	)
}

// mcp converts input.mcp. Fields the policy provably never reads are left
// out (the decision cache keys on the same fields).
func (s *termSlab) mcp(m *MCP, use inputUse) (*ast.Term, error) {
	args := nullTerm
	if raw := m.Arguments; use.arguments && len(raw) > 0 {
		v, err := jsonToValue(raw)
		if err != nil {
			return nil, fmt.Errorf("policy: input mcp.arguments: %w", err)
		}
		args = ast.NewTerm(v)
	}
	kvs := make([][2]*ast.Term, 0, len(mcpFieldNames))
	for i := range mcpFieldNames {
		if use.mcp&(1<<i) == 0 {
			continue
		}
		var v *ast.Term
		switch i {
		case 0:
			v = s.str(m.ProtocolVersion)
		case 1:
			v = s.str(m.Transport)
		case 2:
			v = s.str(m.SessionID)
		case 3:
			v = ast.InternedTerm(m.Batch)
		case 4:
			v = ast.InternedTerm(m.BatchSize)
		case 5:
			v = s.str(m.Kind)
		case 6:
			v = s.str(m.Method)
		case 7:
			v = s.str(m.Tool)
		case 8:
			v = s.str(m.Prompt)
		case 9:
			v = s.str(m.URI)
		case 10:
			v = args
		}
		kvs = append(kvs, [2]*ast.Term{mcpKeys[i], v})
	}
	return s.obj(kvs...), nil
}

// connection converts input.connection.
func (s *termSlab) connection(c *Connection) *ast.Term {
	return ast.ObjectTerm(
		[2]*ast.Term{kConnMode, ast.StringTerm(c.Mode)},
		[2]*ast.Term{kStatus, ast.StringTerm(c.Status)},
		[2]*ast.Term{kScopes, s.strArray(c.Scopes)},
	)
}

// principal converts input.principal: the fields the policy reads (all of
// them when it reads the principal other than through constant paths), and
// of the claims those it reads by name (all when it reads the claims object
// other than through constant names). Parts the policy never reads are
// left out: it cannot tell.
func (s *termSlab) principal(p *Principal, use inputUse) (*ast.Term, error) {
	var buf [14][2]*ast.Term // principalFieldNames; on the stack: NewObject copies the pairs
	kvs := buf[:0]
	for i := range principalFieldNames {
		if !use.wholePrincipal && use.principal&(1<<i) == 0 {
			continue
		}
		var v *ast.Term
		switch i {
		case 0:
			v = ast.InternedTerm(p.Authenticated)
		case 1:
			v = s.str(p.Kind)
		case 2:
			v = s.str(p.Subject)
		case 3:
			v = s.str(p.UserID)
		case 4:
			v = s.str(p.UserKey)
		case 5:
			v = s.str(p.Org)
		case 6:
			v = s.str(p.Issuer)
		case 7:
			v = s.str(p.ClientID)
		case 8:
			v = s.strArray(p.Scopes)
		case 9:
			v = nullTerm
			if p.Actor != nil {
				v = s.actor(p.Actor)
			}
		case 10:
			v = ast.InternedEmptyArray
			if len(p.Chain) > 0 {
				chain := make([]*ast.Term, len(p.Chain))
				for i := range p.Chain {
					chain[i] = s.actor(&p.Chain[i])
				}
				v = ast.ArrayTerm(chain...)
			}
		case 11:
			v = s.str(p.SPIFFEID)
		case 12:
			v = s.str(p.Method)
		case 13:
			v = nullTerm
			if use.claims && p.Claims != nil {
				c, err := s.readClaims(p.Claims, use)
				if err != nil {
					return nil, fmt.Errorf("policy: input principal.claims: %w", err)
				}
				v = ast.NewTerm(c)
			}
		}
		kvs = append(kvs, [2]*ast.Term{principalKeys[i], v})
	}
	return s.obj(kvs...), nil
}

// readClaims converts the claims the policy reads: all of them, or those
// it names.
func (s *termSlab) readClaims(claims map[string]any, use inputUse) (ast.Value, error) {
	if use.wholePrincipal || use.allClaims {
		return s.claimsValue(claims)
	}
	var buf [16][2]*ast.Term // on the stack: NewObject copies the pairs
	kvs := buf[:0]
	for _, name := range use.claimNames {
		c, ok := claims[name]
		if !ok {
			continue
		}
		kv, err := s.claimPair(name, c)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, kv)
	}
	return ast.NewObject(kvs...), nil
}

// claimPair converts one member of a claims object.
func (s *termSlab) claimPair(k string, v any) ([2]*ast.Term, error) {
	ev, err := s.claimsValue(v)
	if err != nil {
		return [2]*ast.Term{}, err
	}
	key, ok := claimNames[k]
	if !ok {
		key = s.next()
		key.Value = ast.String(k)
	}
	t := s.next()
	t.Value = ev
	return [2]*ast.Term{key, t}, nil
}

func (s *termSlab) server(sv *Server, use inputUse) *ast.Term {
	return s.obj(
		[2]*ast.Term{kID, s.str(sv.ID)},
		[2]*ast.Term{kResource, s.str(sv.Resource)},
		[2]*ast.Term{kScopes, s.strArray(sv.Scopes)},
		[2]*ast.Term{kCredentialMode, s.str(sv.CredentialMode)},
		[2]*ast.Term{kCredentialModes, s.strArray(sv.CredentialModes)},
		[2]*ast.Term{kLabels, s.strMapIf(use.labels, sv.Labels)},
	)
}

func (s *termSlab) actor(a *Actor) *ast.Term {
	return s.obj(
		[2]*ast.Term{kSub, s.str(a.Subject)},
		[2]*ast.Term{kClientID, s.str(a.ClientID)},
		[2]*ast.Term{kIss, s.str(a.Issuer)},
	)
}

func (s *termSlab) headers(used bool, r *Request) *ast.Term {
	if !used || r.Headers != nil || r.RawHeaders == nil {
		return s.strMapIf(used, r.Headers)
	}
	kvs := make([][2]*ast.Term, 0, len(r.RawHeaders))
	for k, v := range r.RawHeaders {
		if r.KeepHeader == nil || r.KeepHeader(k) {
			kvs = append(kvs, [2]*ast.Term{s.str(k), s.str(v)})
		}
	}
	return s.obj(kvs...)
}

func (s *termSlab) strMapIf(used bool, m map[string]string) *ast.Term {
	if !used {
		return nullTerm
	}
	return s.strMap(m)
}

// strMap converts a map to an object; a nil map becomes an empty object so
// that policies can index it without guarding against null.
func (s *termSlab) strMap(m map[string]string) *ast.Term {
	kvs := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		kvs = append(kvs, [2]*ast.Term{s.str(k), s.str(v)})
	}
	return s.obj(kvs...)
}

// strArray converts a slice to an array; nil becomes an empty array.
func (s *termSlab) strArray(xs []string) *ast.Term {
	if len(xs) == 0 {
		return ast.InternedEmptyArray // immutable, shared (OPA's own)
	}
	terms := make([]*ast.Term, len(xs))
	for i, x := range xs {
		terms[i] = s.str(x)
	}
	return ast.ArrayTerm(terms...)
}

// jsonToValue parses a JSON document into an AST value.
func jsonToValue(raw []byte) (ast.Value, error) {
	var x any
	if err := util.UnmarshalJSON(raw, &x); err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(x)
}

// claimsValue converts decoded JSON claims to an AST value without
// reflection for the types a JSON decoder produces; anything else goes
// through ast.InterfaceToValue, so the result is the same.
func claimsValue(x any) (ast.Value, error) {
	s := termSlab{terms: util.NewPtrSlice[ast.Term](claimTerms(x))}
	return s.claimsValue(x)
}

// claimNames are the claim names most tokens carry, interned as keys.
var claimNames = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "typ", "azp", "client_id", "cid", "scope", "scp",
		"roles", "groups", "org_id", "tid", "oid", "uid", "sid", "act", "may_act", "email", "email_verified",
		"name", "preferred_username", "given_name", "family_name", "auth_time", "amr", "acr", "ver", "appid",
		"idp", "realm_access", "resource_access", "permissions", "gty", "cnf", "nonce", "at_hash",
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// readClaimTerms counts the terms readClaims takes from its slab: the slab
// is kept as long as the converted principal, so it holds no terms for
// claims the policy does not read.
func readClaimTerms(claims map[string]any, use *inputUse) int {
	if use.wholePrincipal || use.allClaims {
		return claimTerms(claims)
	}
	if !use.claims || use.principal&claimsBit == 0 {
		return 0
	}
	n := 0
	for _, name := range use.claimNames {
		if c, ok := claims[name]; ok {
			n += 2 + claimTerms(c)
		}
	}
	return n
}

// claimTerms counts the terms claimsValue takes from its slab for x.
func claimTerms(x any) int {
	switch v := x.(type) {
	case map[string]any:
		n := 0
		for k, e := range v {
			if _, ok := claimNames[k]; !ok {
				n++
			}
			n += 1 + claimTerms(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range v {
			n += 1 + claimTerms(e)
		}
		return n
	case []string:
		return len(v)
	}
	return 0
}

// claimsValue is claimsValue with every term taken from s.
func (s *termSlab) claimsValue(x any) (ast.Value, error) {
	switch v := x.(type) {
	case nil:
		return ast.Null{}, nil
	case string:
		return ast.String(v), nil
	case bool:
		return ast.Boolean(v), nil
	case json.Number:
		return ast.Number(v), nil
	case map[string]any:
		var buf [16][2]*ast.Term // on the stack: NewObject copies the pairs
		kvs := buf[:0]
		if len(v) > len(buf) {
			kvs = make([][2]*ast.Term, 0, len(v))
		}
		for k, e := range v {
			kv, err := s.claimPair(k, e)
			if err != nil {
				return nil, err
			}
			kvs = append(kvs, kv)
		}
		return ast.NewObject(kvs...), nil
	case []any:
		ts := make([]*ast.Term, len(v))
		for i, e := range v {
			ev, err := s.claimsValue(e)
			if err != nil {
				return nil, err
			}
			ts[i] = s.next()
			ts[i].Value = ev
		}
		return ast.NewArray(ts...), nil
	case []string:
		ts := make([]*ast.Term, len(v))
		for i, e := range v {
			ts[i] = s.str(e)
		}
		return ast.NewArray(ts...), nil
	}
	return ast.InterfaceToValue(x)
}
