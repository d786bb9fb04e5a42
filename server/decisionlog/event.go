package decisionlog

import "time"

// Event is one decision log entry. Its JSON encoding is OPA's decision log
// event (EventV1 of github.com/open-policy-agent/opa/v1/plugins/logs): the
// same field names, so OPA-compatible collectors (and OPA's own types)
// decode it.
//
// Input and Result are encoded with encoding/json; they are typically the
// policy input (a struct or a map[string]any) and the decision document.
// The Logger never modifies an Event or anything it points to.
type Event struct {
	// Labels are merged over the Logger's labels (config labels, id and
	// version); usually left nil.
	Labels     map[string]string `json:"labels"`
	DecisionID string            `json:"decision_id"`
	TraceID    string            `json:"trace_id,omitempty"`
	SpanID     string            `json:"span_id,omitempty"`
	// Bundles maps bundle names to the revision that made the decision.
	Bundles map[string]BundleInfo `json:"bundles,omitempty"`
	// Path is the decision's path without "data.", slash-separated, as in
	// OPA ("mcpauthz/decision").
	Path  string `json:"path,omitempty"`
	Query string `json:"query,omitempty"`
	Input any    `json:"input,omitempty"`
	// Result is the decision document.
	Result any `json:"result,omitempty"`
	// Erased lists the mask paths removed from this event (set by the
	// Logger).
	Erased []string `json:"erased,omitempty"`
	// Masked lists paths whose values were replaced (OPA's upsert masks;
	// the Logger does not set it, it is kept for format compatibility).
	Masked      []string  `json:"masked,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Timestamp   time.Time `json:"timestamp"`
	// Metrics are per-decision figures, e.g. timer_server_handler_ns.
	Metrics   map[string]any `json:"metrics,omitempty"`
	RequestID uint64         `json:"req_id,omitempty"`
	Custom    map[string]any `json:"custom,omitempty"`
}

// BundleInfo names the revision of one bundle.
type BundleInfo struct {
	Revision string `json:"revision"`
}
