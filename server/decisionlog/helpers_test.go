package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

// opaEvent mirrors EventV1 of github.com/open-policy-agent/opa/v1/plugins/logs
// (v1.22.2). Importing that package would pull OPA's whole plugin stack
// (oras, OpenTelemetry, ...) into go.mod, so the test keeps a copy and
// TestEventFieldsMatchOPASource checks it against OPA's source.
type opaEvent struct {
	Labels              map[string]string        `json:"labels"`
	DecisionID          string                   `json:"decision_id"`
	BatchDecisionID     string                   `json:"batch_decision_id,omitempty"`
	TraceID             string                   `json:"trace_id,omitempty"`
	SpanID              string                   `json:"span_id,omitempty"`
	Revision            string                   `json:"revision,omitempty"`
	Bundles             map[string]opaBundleInfo `json:"bundles,omitempty"`
	Path                string                   `json:"path,omitempty"`
	Query               string                   `json:"query,omitempty"`
	Input               *any                     `json:"input,omitempty"`
	Result              *any                     `json:"result,omitempty"`
	IntermediateResults map[string]any           `json:"intermediate_results,omitempty"`
	MappedResult        *any                     `json:"mapped_result,omitempty"`
	NDBuiltinCache      *any                     `json:"nd_builtin_cache,omitempty"`
	Erased              []string                 `json:"erased,omitempty"`
	Masked              []string                 `json:"masked,omitempty"`
	Error               any                      `json:"error,omitempty"`
	RequestedBy         string                   `json:"requested_by,omitempty"`
	Timestamp           time.Time                `json:"timestamp"`
	Metrics             map[string]any           `json:"metrics,omitempty"`
	RequestID           uint64                   `json:"req_id,omitempty"`
	RuleLabels          []map[string]any         `json:"rule_labels,omitempty"`
	RequestContext      any                      `json:"request_context,omitempty"`
	Custom              map[string]any           `json:"custom,omitempty"`
}

type opaBundleInfo struct {
	Revision string `json:"revision,omitempty"`
}

// fakeClock is an injectable clock.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)) }

// upload is one request the collector received.
type upload struct {
	status int
	header http.Header
	raw    []byte // decompressed body
	events []opaEvent
}

// collector is an OPA-compatible decision log endpoint.
type collector struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	uploads []upload
	// respond picks the status (and body) of the n-th request (0-based).
	respond func(n int, r *http.Request) (int, string)
	hang    chan struct{} // when non-nil, handlers block until it is closed
}

func newCollector(t *testing.T, respond func(n int, r *http.Request) (int, string)) *collector {
	t.Helper()
	c := &collector{t: t, respond: respond}
	c.srv = httptest.NewServer(http.HandlerFunc(c.handle))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) handle(w http.ResponseWriter, r *http.Request) {
	if c.hang != nil {
		select {
		case <-c.hang:
		case <-r.Context().Done():
		}
		return
	}
	u := upload{status: http.StatusOK, header: r.Header.Clone()}
	if r.Method != http.MethodPost {
		c.t.Errorf("method = %s, want POST", r.Method)
	}
	if got := r.Header.Get("Content-Encoding"); got != "gzip" {
		c.t.Errorf("Content-Encoding = %q, want gzip", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		c.t.Errorf("Content-Type = %q, want application/json", got)
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		c.t.Errorf("body is not gzip: %v", err)
		http.Error(w, "bad gzip", http.StatusBadRequest)
		return
	}
	u.raw, err = io.ReadAll(zr)
	if err != nil {
		c.t.Errorf("gunzip: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(u.raw))
	dec.DisallowUnknownFields() // every field must be one of OPA's
	if err := dec.Decode(&u.events); err != nil {
		c.t.Errorf("body is not a JSON array of OPA events: %v\n%s", err, u.raw)
	}
	c.mu.Lock()
	n := len(c.uploads)
	body := ""
	if c.respond != nil {
		u.status, body = c.respond(n, r)
	}
	c.uploads = append(c.uploads, u)
	c.mu.Unlock()
	w.WriteHeader(u.status)
	_, _ = io.WriteString(w, body)
}

// accepted returns the events of the uploads answered with 2xx, per upload.
func (c *collector) accepted() [][]opaEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]opaEvent
	for _, u := range c.uploads {
		if u.status >= 200 && u.status < 300 {
			out = append(out, u.events)
		}
	}
	return out
}

func (c *collector) all() []upload {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]upload(nil), c.uploads...)
}

func ids(batches [][]opaEvent) []string {
	var out []string
	for _, b := range batches {
		for _, e := range b {
			out = append(out, e.DecisionID)
		}
	}
	return out
}

func sizes(batches [][]opaEvent) []int {
	var out []int
	for _, b := range batches {
		out = append(out, len(b))
	}
	return out
}

// driven is a Logger whose writer runs only when the test ticks it.
type driven struct {
	*Logger
	tick  chan time.Time
	clock *fakeClock
}

func newDriven(t *testing.T, cfg Config, opts Options) *driven {
	t.Helper()
	d := &driven{tick: make(chan time.Time), clock: newFakeClock()}
	opts.tick = d.tick
	if opts.Now == nil {
		opts.Now = d.clock.Now
	}
	l, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	d.Logger = l
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return d
}

// step runs one writer step and waits until it has finished (the second
// tick is received only once the first step is done; it runs another step
// at the same clock reading, which is idempotent for these tests).
func (d *driven) step() {
	d.tick <- time.Time{}
	d.tick <- time.Time{}
}

func ev(id string) *Event {
	return &Event{DecisionID: id, Path: "mcpauthz/decision",
		Input:  map[string]any{"mcp": map[string]any{"method": "tools/call", "tool": "search"}},
		Result: map[string]any{"allow": true}}
}

// waitFor polls cond for up to 10s (background delivery), failing the test
// otherwise.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func gunzipAll(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}
