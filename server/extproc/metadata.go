package extproc

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
)

// MetadataVersion is the value of the "v" field of the hand-off; ParseMetadata
// refuses any other.
const MetadataVersion = "1"

// metadataKey is the key, inside Envoy's ext_authz namespace, of the struct
// mcpauthz's ext_authz decision hands to its ext_proc side.
const metadataKey = "mcpauthz"

// Values of Metadata.Transport.
const (
	TransportStreamable = "streamable_http"
	TransportLegacySSE  = "sse" // HTTP+SSE (2024-11-05): responses arrive on the GET stream
)

// ErrNoMetadata means the ext_authz hand-off is absent: the request was not
// allowed by mcpauthz's ext_authz, or the Envoy filter does not forward
// the ext_authz namespace.
var ErrNoMetadata = errors.New("extproc: no mcpauthz metadata from ext_authz")

// Metadata is what mcpauthz's ext_authz decision hands to ext_proc through
// Envoy dynamic metadata (CheckResponse.dynamic_metadata, namespace
// envoy.ExtAuthzMetadataNamespace, key "mcpauthz"). It never carries a
// token, a session id or any other secret: the principal is an opaque
// handle the Evaluator resolves, the session a one-way key.
type Metadata struct {
	// Principal is an opaque handle to the caller as ext_authz prepared it
	// ("" for anonymous callers); only the Evaluator interprets it.
	Principal string
	// Kind is the principal kind (human|agent_for_user|agent|anonymous).
	Kind   string
	Server string // MCP server id (required)
	// Method is the JSON-RPC method of the single message ("" for a GET
	// stream, a DELETE, a client response or a batch).
	Method string
	// RPCKind is request|notification|response|stream|end_session.
	RPCKind string
	// RequestID is the JSON text of the message id as the client sent it
	// (`7`, `"abc"`), "" when it has none.
	RequestID string
	// Batch is set for a JSON-RPC batch (2025-03-26); BatchMethods lists
	// its methods.
	Batch        bool
	BatchMethods []string
	Protocol     string // MCP protocol version
	Transport    string // TransportStreamable or TransportLegacySSE
	// Session is SessionKey(Server, session id), "" without a session.
	Session    string
	Revision   string // policy revision of the decision
	DecisionID string
	Credential string // upstream credential mode used for the request
	Connection string // per-user connection key, when the credential is one
}

// SessionKey is the one-way key under which ext_authz and ext_proc name an
// MCP session (Mcp-Session-Id or a legacy sessionId) of a server: session
// ids act like credentials and never travel in metadata.
func SessionKey(serverID, sessionID string) string {
	h := sha256.New()
	h.Write([]byte(serverID))
	h.Write([]byte{0})
	h.Write([]byte(sessionID))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// Struct is the CheckResponse.dynamic_metadata for m (see
// envoy.AllowWithMetadata). Empty fields are left out.
func (m *Metadata) Struct() *structpb.Struct { return m.StructWith(nil) }

// StructWith is Struct with the values of the fields that repeat across
// requests (version, kind, server, method, rpc kind, protocol, transport,
// revision, credential mode) taken from vals, so a Check allocates only
// what is its own. A nil vals allocates every value.
func (m *Metadata) StructWith(vals *Values) *structpb.Struct {
	f := make(map[string]*structpb.Value, 16)
	shared := func(k, v string) {
		if v != "" {
			f[k] = vals.get(v)
		}
	}
	own := func(k, v string) {
		if v != "" {
			f[k] = structpb.NewStringValue(v)
		}
	}
	shared("v", MetadataVersion)
	own("principal", m.Principal)
	shared("kind", m.Kind)
	shared("server", m.Server)
	shared("method", m.Method)
	shared("rpc_kind", m.RPCKind)
	own("id", m.RequestID)
	shared("protocol", m.Protocol)
	shared("transport", m.Transport)
	own("session", m.Session)
	shared("revision", m.Revision)
	own("decision", m.DecisionID)
	shared("credential", m.Credential)
	own("connection", m.Connection)
	if m.Batch {
		f["batch"] = structpb.NewBoolValue(true)
		vs := make([]*structpb.Value, len(m.BatchMethods))
		for i, s := range m.BatchMethods {
			vs[i] = structpb.NewStringValue(s)
		}
		f["batch_methods"] = structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
	inner := &structpb.Struct{Fields: f}
	return &structpb.Struct{Fields: map[string]*structpb.Value{metadataKey: structpb.NewStructValue(inner)}}
}

// maxSharedValues bounds Values: past it, new strings get values of their
// own (correct, one allocation more). Method names come from clients, so
// the set must not grow without bound.
const maxSharedValues = 1024

// Values hands out one immutable *structpb.Value per string for metadata
// fields that repeat across requests. Protobuf messages may be marshalled
// concurrently as long as nobody modifies them, which nothing does once a
// value is handed out. The zero value is ready; safe for concurrent use.
type Values struct {
	mu sync.RWMutex
	m  map[string]*structpb.Value
}

func (vs *Values) get(s string) *structpb.Value {
	if vs == nil {
		return structpb.NewStringValue(s)
	}
	vs.mu.RLock()
	v, ok := vs.m[s]
	vs.mu.RUnlock()
	if ok {
		return v
	}
	v = structpb.NewStringValue(s)
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if prev, ok := vs.m[s]; ok {
		return prev
	}
	if len(vs.m) < maxSharedValues {
		if vs.m == nil {
			vs.m = make(map[string]*structpb.Value)
		}
		vs.m[s] = v
	}
	return v
}

// ParseMetadata reads the hand-off from a ProcessingRequest's
// metadata_context. It returns ErrNoMetadata when the namespace or key is
// absent and a descriptive error when anything in it is malformed; either
// way the caller fails closed.
func ParseMetadata(md *corev3.Metadata) (Metadata, error) {
	ns := md.GetFilterMetadata()[envoy.ExtAuthzMetadataNamespace]
	v, ok := ns.GetFields()[metadataKey]
	if !ok {
		return Metadata{}, ErrNoMetadata
	}
	s := v.GetStructValue()
	if s == nil {
		return Metadata{}, fmt.Errorf("extproc: metadata %s.%s: want a struct", envoy.ExtAuthzMetadataNamespace, metadataKey)
	}
	var m Metadata
	r := mdReader{fields: s.Fields}
	var ver string
	r.str("v", &ver)
	r.str("principal", &m.Principal)
	r.str("kind", &m.Kind)
	r.str("server", &m.Server)
	r.str("method", &m.Method)
	r.str("rpc_kind", &m.RPCKind)
	r.str("id", &m.RequestID)
	r.str("protocol", &m.Protocol)
	r.str("transport", &m.Transport)
	r.str("session", &m.Session)
	r.str("revision", &m.Revision)
	r.str("decision", &m.DecisionID)
	r.str("credential", &m.Credential)
	r.str("connection", &m.Connection)
	r.batch(&m)
	m.check(&r.errs, ver)
	if err := r.errs.Err(); err != nil {
		return Metadata{}, fmt.Errorf("extproc: metadata %s.%s: %w", envoy.ExtAuthzMetadataNamespace, metadataKey, err)
	}
	return m, nil
}

// mdReader reads the fields of the hand-off struct, collecting problems.
type mdReader struct {
	fields map[string]*structpb.Value
	errs   fielderr.List
}

// str sets *dst to the string field k, if present.
func (r *mdReader) str(k string, dst *string) {
	fv, ok := r.fields[k]
	if !ok {
		return
	}
	sv, ok := fv.GetKind().(*structpb.Value_StringValue)
	if !ok {
		r.errs.Add(k, "want a string")
		return
	}
	*dst = sv.StringValue
}

// batch sets m.Batch and m.BatchMethods from the fields batch and
// batch_methods, if present.
func (r *mdReader) batch(m *Metadata) {
	if bv, ok := r.fields["batch"]; ok {
		b, ok := bv.GetKind().(*structpb.Value_BoolValue)
		if !ok {
			r.errs.Add("batch", "want a bool")
		} else {
			m.Batch = b.BoolValue
		}
	}
	lv, ok := r.fields["batch_methods"]
	if !ok {
		return
	}
	l, ok := lv.GetKind().(*structpb.Value_ListValue)
	if !ok {
		r.errs.Add("batch_methods", "want a list")
		return
	}
	for i, e := range l.ListValue.GetValues() {
		sv, ok := e.GetKind().(*structpb.Value_StringValue)
		if !ok {
			r.errs.Add(fmt.Sprintf("batch_methods[%d]", i), "want a string")
			continue
		}
		m.BatchMethods = append(m.BatchMethods, sv.StringValue)
	}
}

// check checks the version ver and the fields of m read so far.
func (m *Metadata) check(l *fielderr.List, ver string) {
	switch {
	case ver != MetadataVersion:
		l.Addf("v", "%q is not version %s", ver, MetadataVersion)
	case m.Server == "":
		l.Add("server", "required")
	}
	switch m.Transport {
	case "", TransportStreamable, TransportLegacySSE:
	default:
		l.Addf("transport", "unknown %q", m.Transport)
	}
	if m.RequestID != "" && !validID([]byte(m.RequestID)) {
		l.Add("id", "not a JSON string or number")
	}
	if !m.Batch && len(m.BatchMethods) > 0 {
		l.Add("batch_methods", "only with batch")
	}
}

// validID reports a JSON string or number, alone.
func validID(b []byte) bool {
	if len(b) == 0 || (b[0] != '"' && b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return false
	}
	end, err := scanValue(b, 0, 0)
	return err == nil && end == len(b)
}

// UsesPrincipal reports whether ext_proc may evaluate the policy for this
// exchange, and so must resolve Principal: a list request's answer (JSON or
// SSE, or a legacy SSE POST whose answer arrives on the GET stream), or a
// GET stream, which may carry answers to lists. ext_authz registers the
// principal's handle only for these.
func (m *Metadata) UsesPrincipal() bool { return m.RPCKind == "stream" || isListMethod(m.Method) }

// listMethods are the methods whose results ext_proc filters.
var listMethods = []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list"}

func isListMethod(m string) bool { return slices.Contains(listMethods, m) }
