package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/extproc"
	"github.com/mcpauthz/mcpauthz/server/mcp"
)

// This file connects the response side (server/extproc, Envoy's
// ExternalProcessor) to the Check pipeline: what ext_authz hands over in
// dynamic metadata, how a list entry is judged with the same policy input
// the real call would have (minus arguments), and what mcpauthz learns from
// upstream answers.

// principalHandle names a prepared principal in metadata without carrying
// anything secret: for token callers a prefix of the token's SHA-256 (not
// secret, see identity.Principal.TokenHash), else a hash of the principal
// key. ext_proc resolves it in this process only.
func principalHandle(p *identity.Principal, owner string) string {
	if p.TokenHash != ([32]byte{}) {
		return hex.EncodeToString(p.TokenHash[:16])
	}
	h := sha256.Sum256([]byte(owner))
	return hex.EncodeToString(h[:16])
}

// handoff builds the ext_authz → ext_proc metadata of an allowed call.
func (s *Service) handoff(rec *record, srv *mcpServer, derived *preparedEntry, call *mcp.Call, sid, credMode, connKey string) *extproc.Metadata {
	md := &extproc.Metadata{
		Kind: rec.Kind, Server: srv.id, Protocol: call.Version, Revision: rec.Revision,
		DecisionID: rec.ID, Credential: credMode, Connection: connKey, Transport: extproc.TransportStreamable,
	}
	if call.Transport == mcp.TransportLegacySSE {
		md.Transport = extproc.TransportLegacySSE
	}
	if sid != "" {
		md.Session = extproc.SessionKey(srv.id, sid)
	}
	switch {
	case len(call.Messages) == 0:
		md.RPCKind = "stream"
	case call.Batch:
		md.Batch, md.RPCKind = true, "request"
		for i := range call.Messages {
			md.BatchMethods = append(md.BatchMethods, call.Messages[i].Method)
		}
	default:
		m := &call.Messages[0]
		md.Method, md.RPCKind = m.Method, m.Kind.String()
		if m.ID != nil {
			md.RequestID = string(m.ID)
		}
	}
	if derived != nil {
		md.Principal = derived.handle
		if md.UsesPrincipal() {
			s.prepared.publish(derived)
		}
	}
	return md
}

// listEvaluator implements extproc.Evaluator with the Check path's policy
// engine: an entry stays when the call it offers would be allowed.
type listEvaluator struct{ s *Service }

var _ extproc.Evaluator = listEvaluator{}

// Allowed implements extproc.Evaluator.
func (l listEvaluator) Allowed(ctx context.Context, meta *extproc.Metadata, kind extproc.EntryKind, name string) (bool, error) {
	s := l.s
	srv := s.catalog.byID[meta.Server]
	if srv == nil {
		return false, fmt.Errorf("server: list filter: unknown server %q", meta.Server)
	}
	in := policy.Input{
		Version:        policy.InputVersion,
		Request:        policy.Request{ID: meta.DecisionID, Time: s.now(), Method: "POST", KeepHeader: s.keepHeaderFn},
		PreparedServer: srv.prepared,
		MCP:            policy.MCP{ProtocolVersion: meta.Protocol, Transport: transportName(transportOf(meta)), Kind: "request"},
	}
	if meta.Principal == "" {
		in.Principal = policyPrincipal(nil)
	} else {
		e := s.prepared.byHandle(meta.Principal)
		if e == nil {
			return false, errors.New("server: list filter: the caller's principal is not known here (another replica decided the request, or it expired)")
		}
		in.PreparedPrincipal, in.Principal.Kind = e.pp, string(e.p.Kind)
	}
	switch kind {
	case extproc.Tool:
		in.MCP.Method, in.MCP.Tool = "tools/call", name
	case extproc.Prompt:
		in.MCP.Method, in.MCP.Prompt = "prompts/get", name
	case extproc.Resource, extproc.ResourceTemplate:
		in.MCP.Method, in.MCP.URI = "resources/read", name
	default:
		return false, fmt.Errorf("server: list filter: unknown entry kind %q", kind)
	}
	dec, err := s.policy.Evaluate(ctx, &in)
	if err != nil {
		return false, fmt.Errorf("server: list filter: %w", err)
	}
	return dec.Allow, nil
}

func transportOf(meta *extproc.Metadata) mcp.Transport {
	if meta.Transport == extproc.TransportLegacySSE {
		return mcp.TransportLegacySSE
	}
	return mcp.TransportStreamable
}

// upstreamLearner implements extproc.Learner: an upstream 401 to a stored
// per-user credential makes the connection refresh once or be revoked.
type upstreamLearner struct{ s *Service }

var _ extproc.Learner = upstreamLearner{}

// UpstreamRejected implements extproc.Learner. It never blocks the stream.
func (l upstreamLearner) UpstreamRejected(ctx context.Context, meta *extproc.Metadata, status int, _ string) {
	l.s.log.InfoContext(ctx, "upstream rejected the credential", "server", meta.Server, "status", status,
		"credential", meta.Credential, "decision_id", meta.DecisionID)
	if meta.Connection == "" || l.s.connections == nil {
		return
	}
	key, ok := parseConnKey(meta.Connection)
	if !ok {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := l.s.connections.UpstreamRejected(ctx, key); err != nil {
			l.s.log.Warn("connection: upstream rejection not handled", "server", meta.Server, "err", err)
		}
	}()
}
