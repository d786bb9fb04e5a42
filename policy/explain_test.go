package policy

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func explainEngine(t *testing.T, bundle string) *Engine {
	t.Helper()
	e, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: "../bundles/" + bundle}}}, nil)
	if err != nil {
		t.Fatalf("New(%s): %v", bundle, err)
	}
	return e
}

// explainInput is a tools/call by an agent acting for alice of org acme.
func explainInput(tool string, roles []any, scopes []string, args string) *Input {
	return &Input{
		Version: InputVersion,
		Request: Request{
			ID: "req-1", Method: "POST", Scheme: "https", Host: "docs.example.com", Path: "/docs/mcp",
			RawHeaders: map[string]string{"content-type": "application/json", "x-secret-thing": "nope"},
			KeepHeader: func(name string) bool { return name != "x-secret-thing" },
		},
		MCP: MCP{Kind: "request", Method: "tools/call", Tool: tool, Arguments: json.RawMessage(args)},
		Principal: Principal{
			Authenticated: true, Kind: "agent_for_user", Subject: "alice", UserID: "alice", Org: "acme",
			Scopes: scopes, Method: "jwt",
			Actor:  &Actor{Subject: "drafter"},
			Claims: map[string]any{"roles": roles},
		},
		Server: Server{
			ID: "docs", Resource: "https://docs.example.com/docs/mcp",
			CredentialModes: []string{"public", "delegated"},
			Labels:          map[string]string{"team": "docs"},
		},
	}
}

func TestExplainShippedBundles(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		bundle, tool, args string
		roles              []any
		scopes             []string
		allow              bool
		reason             string
		credential         string
	}{
		{"rbac", "readDocument", `{"id":"d1"}`, []any{"viewer"}, []string{"docs:read"}, true, "allowed", ""},
		{"rbac", "deleteDocument", `{"id":"d1"}`, []any{"admin"}, []string{"docs:admin"}, false, "agent_destructive_tool", ""},
		{"abac", "readDocument", `{"id":"acme/doc-1"}`, nil, nil, true, "allowed", ""},
		{"abac", "readDocument", `{"id":"globex/doc-2"}`, nil, nil, false, "cross_org", ""},
		{"abac", "readDocument", `{"id":7}`, nil, nil, false, "invalid_arguments", ""},
		{"guardrails", "updateDocument", `{}`, []any{"editor"}, nil, true, "allowed", ""},
		{"guardrails", "updateDocument", `{}`, []any{"viewer"}, nil, false, "role_not_allowed", ""},
		{"scopes", "readDocument", `{}`, nil, []string{"docs:read"}, true, "allowed", "delegated"},
		{"scopes", "updateDocument", `{}`, nil, []string{"docs:read"}, false, "insufficient_scope", ""},
	}
	engines := map[string]*Engine{}
	for _, tc := range tests {
		t.Run(tc.bundle+"/"+tc.reason, func(t *testing.T) {
			e := engines[tc.bundle]
			if e == nil {
				e = explainEngine(t, tc.bundle)
				engines[tc.bundle] = e
			}
			in := explainInput(tc.tool, tc.roles, tc.scopes, tc.args)
			ex, err := e.Explain(ctx, in, false)
			if err != nil {
				t.Fatal(err)
			}
			d := ex.Decision
			if d.Allow != tc.allow || d.Reason != tc.reason || d.Credential != tc.credential {
				t.Errorf("decision = %+v, want allow=%t reason=%s credential=%q", d, tc.allow, tc.reason, tc.credential)
			}
			if d.Revision != tc.bundle+"-1" {
				t.Errorf("revision = %q, want %s-1", d.Revision, tc.bundle)
			}
			if ex.Trace != "" {
				t.Errorf("trace recorded without being asked for")
			}
			got, err := e.Evaluate(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, d) {
				t.Errorf("Evaluate = %+v, Explain = %+v", got, d)
			}
		})
	}
}

// The explained input is the full document even for a policy (rbac) that
// never reads request headers or server labels, and a prepared principal
// is expanded.
func TestExplainInputIsFull(t *testing.T) {
	e := explainEngine(t, "rbac")
	if e.snap.Load().use.headers || e.snap.Load().use.labels {
		t.Fatal("test premise: rbac should not read headers or labels")
	}
	in := explainInput("readDocument", []any{"viewer"}, []string{"docs:read"}, `{"id":"d1","n":[1,2]}`)
	in.PreparedPrincipal = PreparePrincipal(in.Principal)
	in.Principal = Principal{Kind: in.PreparedPrincipal.Principal().Kind}
	in.PreparedServer = PrepareServer(in.Server)
	ex, err := e.Explain(context.Background(), in, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ex.Input)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version string `json:"version"`
		Request struct {
			Headers map[string]string `json:"headers"`
			Path    string            `json:"path"`
		} `json:"request"`
		MCP struct {
			Arguments map[string]any `json:"arguments"`
		} `json:"mcp"`
		Principal struct {
			Subject string         `json:"subject"`
			Actor   map[string]any `json:"actor"`
			Claims  map[string]any `json:"claims"`
		} `json:"principal"`
		Server struct {
			Labels          map[string]string `json:"labels"`
			CredentialModes []string          `json:"credential_modes"`
		} `json:"server"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != InputVersion || doc.Request.Path != "/docs/mcp" {
		t.Errorf("version/path = %q %q", doc.Version, doc.Request.Path)
	}
	if want := map[string]string{"content-type": "application/json"}; !reflect.DeepEqual(doc.Request.Headers, want) {
		t.Errorf("headers = %v, want %v (KeepHeader applied)", doc.Request.Headers, want)
	}
	if doc.MCP.Arguments["id"] != "d1" || len(doc.MCP.Arguments["n"].([]any)) != 2 {
		t.Errorf("arguments = %v", doc.MCP.Arguments)
	}
	if doc.Principal.Subject != "alice" || doc.Principal.Actor["sub"] != "drafter" {
		t.Errorf("principal = %+v", doc.Principal)
	}
	if roles, _ := doc.Principal.Claims["roles"].([]any); len(roles) != 1 || roles[0] != "viewer" {
		t.Errorf("claims = %v", doc.Principal.Claims)
	}
	if doc.Server.Labels["team"] != "docs" || !reflect.DeepEqual(doc.Server.CredentialModes, []string{"public", "delegated"}) {
		t.Errorf("server = %+v", doc.Server)
	}
	if ex.Decision.Reason != "allowed" {
		t.Errorf("decision = %+v", ex.Decision)
	}
}

func TestExplainTrace(t *testing.T) {
	e := explainEngine(t, "rbac")
	in := explainInput("updateDocument", []any{"viewer"}, []string{"docs:write"}, `{}`)
	ex, err := e.Explain(context.Background(), in, true)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Decision.Reason != "role_not_allowed" {
		t.Errorf("reason = %q", ex.Decision.Reason)
	}
	for _, want := range []string{"Enter data.mcpauthz.decision", "policy.rego:", "Exit data.mcpauthz.decision", "| Fail "} {
		if !strings.Contains(ex.Trace, want) {
			t.Errorf("trace lacks %q:\n%.2000s", want, ex.Trace)
		}
	}
}

func TestExplainErrors(t *testing.T) {
	if _, err := (&Engine{}).Explain(context.Background(), &Input{}, false); !errors.Is(err, ErrNotReady) {
		t.Errorf("not ready: err = %v", err)
	}
	e := explainEngine(t, "rbac")
	if _, err := e.Explain(context.Background(), nil, false); err == nil || !strings.Contains(err.Error(), "nil input") {
		t.Errorf("nil input: err = %v", err)
	}
	bad := explainInput("readDocument", nil, nil, `{"id":`)
	if _, err := e.Explain(context.Background(), bad, false); err == nil || !strings.Contains(err.Error(), "mcp.arguments") {
		t.Errorf("bad arguments: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Explain(ctx, explainInput("readDocument", nil, nil, `{}`), false); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: err = %v", err)
	}
}

// An undefined result explains as ReasonUndefined, like Evaluate.
func TestDecodeResultSetUndefined(t *testing.T) {
	d, err := decodeResultSet(nil)
	if err != nil || d.Reason != ReasonUndefined || d.Allow {
		t.Errorf("decodeResultSet(nil) = %+v, %v", d, err)
	}
}

// BenchmarkExplain shows what explaining costs compared with Evaluate
// (decision cache disabled, so both run Rego).
func BenchmarkExplain(b *testing.B) {
	ctx := context.Background()
	e, err := New(ctx, Config{Bundles: []BundleSource{{Path: "../bundles/rbac"}}, DecisionCacheSize: -1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := explainInput("readDocument", []any{"viewer"}, []string{"docs:read"}, `{"id":"d1"}`)
	for _, bc := range []struct {
		name string
		run  func() error
	}{
		{"evaluate", func() error { _, err := e.Evaluate(ctx, in); return err }},
		{"explain", func() error { _, err := e.Explain(ctx, in, false); return err }},
		{"explain+trace", func() error { _, err := e.Explain(ctx, in, true); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
