package server

import (
	"context"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/decisionlog"
)

// opaLogger is the OPA-format decision log; *decisionlog.Logger implements it.
type opaLogger interface {
	Log(ev *decisionlog.Event) bool
	Close(ctx context.Context) error
	Stats() decisionlog.Stats
}

// opaPath is the decision path OPA logs for the configured query
// (data.mcpauthz.decision -> mcpauthz/decision).
func opaPath(query string) string {
	if query == "" {
		query = policy.DefaultQuery
	}
	return strings.ReplaceAll(strings.TrimPrefix(query, "data."), ".", "/")
}

// noteInput keeps what the policy saw (for a batch: the element that
// decided) for the OPA decision log, as a plain Input without prepared
// terms. It does nothing unless that log is on.
func (s *Service) noteInput(rec *record, in *policy.Input) {
	if s.opa == nil {
		return
	}
	c := *in
	if c.PreparedPrincipal != nil {
		c.Principal = c.PreparedPrincipal.Principal()
	}
	if c.PreparedServer != nil {
		c.Server = c.PreparedServer.Server()
	}
	c.PreparedPrincipal, c.PreparedServer = nil, nil
	c.MCP.SessionID = rec.Session // a hash prefix, never the id itself
	if c.Request.Headers == nil {
		c.Request.Headers = map[string]string{}
		for k, v := range c.Request.RawHeaders {
			if s.keepHeader(k) {
				c.Request.Headers[k] = v
			}
		}
	}
	c.Request.RawHeaders, c.Request.KeepHeader = nil, nil
	rec.input = &c
}

// opaEvent turns a finished record into an OPA EventV1.
func (s *Service) opaEvent(rec *record) *decisionlog.Event {
	result := map[string]any{"allowed": rec.Allow, "reason": rec.Reason, "http_status": rec.Status}
	if rec.Message != "" {
		result["message"] = rec.Message
	}
	if c := rec.Credential; c != nil {
		result["credential"] = c
	}
	ev := &decisionlog.Event{
		DecisionID: rec.ID,
		Path:       s.opaPath,
		Result:     result,
		Timestamp:  rec.Time,
		Metrics:    map[string]any{"timer_server_handler_ns": rec.LatencyUS * int64(time.Microsecond)},
	}
	if rec.input != nil {
		ev.Input = rec.input
	}
	if rec.Revision != "" {
		revs := strings.Split(rec.Revision, ",")
		ev.Bundles = make(map[string]decisionlog.BundleInfo, len(revs))
		for i, r := range revs {
			name := "bundle"
			if i < len(s.bundleNames) {
				name = s.bundleNames[i]
			}
			ev.Bundles[name] = decisionlog.BundleInfo{Revision: r}
		}
	}
	return ev
}
