package policy

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

func prepared(t *testing.T, in *Input) *Input {
	t.Helper()
	var err error
	if in.PreparedPrincipal, err = PreparePrincipal(in.Principal); err != nil {
		t.Fatal(err)
	}
	in.PreparedServer = PrepareServer(in.Server)
	return in
}

func TestDecisionCache(t *testing.T) {
	const toolPolicy = `package mcpauthz
decision := {"allow": input.mcp.tool == "readDocument", "reason": concat(":", ["tool", input.mcp.tool])}
`
	tests := []struct {
		name     string
		rego     string
		size     int
		memoized bool
	}{
		{"deterministic policy is memoized", toolPolicy, 0, true},
		{"disabled by config", toolPolicy, -1, false},
		{"reads input.request", "package mcpauthz\ndecision := {\"allow\": input.request.path == \"/mcp\"}\n", 0, false},
		{"uses the clock", "package mcpauthz\ndecision := {\"allow\": time.now_ns() > 0}\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"p.rego": tt.rego})
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: tt.size})
			ctx := context.Background()
			in := prepared(t, toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument"))
			first, err := e.Evaluate(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			var second Decision
			// ristretto admits asynchronously: retry until the entry is visible.
			for range 200 {
				if second, err = e.Evaluate(ctx, in); err != nil {
					t.Fatal(err)
				}
				if e.DecisionCacheStats().Hits > 0 {
					break
				}
				e.snap.Load().decisionsWait()
			}
			st := e.DecisionCacheStats()
			if got := st.Hits > 0; got != tt.memoized {
				t.Fatalf("memoized = %v (stats %+v), want %v", got, st, tt.memoized)
			}
			if first.Allow != second.Allow || first.Reason != second.Reason || first.Revision != second.Revision {
				t.Fatalf("cached decision differs: %+v vs %+v", first, second)
			}
			if !tt.memoized {
				return
			}
			// Another tool is another key: the cached allow must not leak.
			in.MCP.Tool = "deleteDocument"
			d, err := e.Evaluate(ctx, in)
			if err != nil || d.Allow || d.Reason != "tool:deleteDocument" {
				t.Fatalf("other tool got %+v %v", d, err)
			}
			// The same principal prepared again is a different principal for
			// the cache (ids are never reused).
			in.MCP.Tool = "readDocument"
			hits := e.DecisionCacheStats().Hits
			again := prepared(t, toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument"))
			if _, err := e.Evaluate(ctx, again); err != nil {
				t.Fatal(err)
			}
			if e.DecisionCacheStats().Hits != hits {
				t.Fatal("a new prepared principal hit another principal's entry")
			}
			// Unprepared input is never memoized.
			plain := toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument")
			if _, ok := plain.cacheKey(e.snap.Load().use); ok {
				t.Fatal("unprepared input produced a cache key")
			}
		})
	}
}

// TestDecisionCacheKeyCoversReadFields: only the fields the policy reads are
// in the key, each length-prefixed so values cannot run into each other.
func TestDecisionCacheKeyCoversReadFields(t *testing.T) {
	u := inputUse{mcp: mcpBit("tool") | mcpBit("uri")}
	a := prepared(t, toolCall("human", nil, nil, "ab"))
	a.MCP.URI = "c"
	b := &Input{PreparedPrincipal: a.PreparedPrincipal, PreparedServer: a.PreparedServer, MCP: a.MCP}
	b.MCP.Tool, b.MCP.URI = "a", "bc"
	ka, _ := a.cacheKey(u)
	kb, _ := b.cacheKey(u)
	if ka == kb {
		t.Fatal("tool/uri boundary is ambiguous in the key")
	}
	c := &Input{PreparedPrincipal: a.PreparedPrincipal, PreparedServer: a.PreparedServer, MCP: a.MCP}
	c.MCP.SessionID = "another-session" // not read by the policy
	kc, _ := c.cacheKey(u)
	if kc != ka {
		t.Fatal("a field the policy does not read changed the key")
	}
}

// input.connection is part of the decision: a memoized decision for one
// connection status is never served for another.
func TestConnectionInInputAndCacheKey(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": `package mcpauthz
decision := {"allow": input.connection.status == "AUTHORIZED", "reason": sprintf("connection %v", [input.connection.status])} if input.connection
else := {"allow": false, "reason": "no connection"}
`})
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
	ctx := context.Background()
	in := prepared(t, toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument"))
	for _, tc := range []struct {
		conn  *Connection
		allow bool
	}{
		{&Connection{Mode: "individual", Status: "AUTHORIZED", Scopes: []string{"repo"}}, true},
		{&Connection{Mode: "individual", Status: "REVOKED"}, false},
		{nil, false},
		{&Connection{Mode: "individual", Status: "AUTHORIZED"}, true},
	} {
		for range 3 { // repeated: a cached decision must still follow the connection
			in.Connection = tc.conn
			d, err := e.Evaluate(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tc.allow {
				t.Fatalf("connection %+v: allow = %v (%s), want %v", tc.conn, d.Allow, d.Reason, tc.allow)
			}
			e.snap.Load().decisionsWait()
		}
	}
}

// TestReloadRetiresDecisionCache: a policy change closes the replaced
// snapshot's decision cache after the grace period, so reloads do not
// accumulate ristretto caches and their goroutines.
func TestReloadRetiresDecisionCache(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, versioned("v0"))
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: 1000})
	e.retireAfter = time.Millisecond
	in := toolCall("human", []any{"viewer"}, nil, "readDocument")
	evaluate := func() {
		t.Helper()
		if _, err := e.Evaluate(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	evaluate()
	runtime.GC()
	before := runtime.NumGoroutine()
	first := e.snap.Load()
	for i := 1; i <= 30; i++ {
		writeFiles(t, dir, versioned(fmt.Sprintf("v%d", i)))
		if err := e.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		evaluate()
	}
	if first.decisions == nil || e.snap.Load().decisions == nil {
		t.Fatal("the test policy is not memoized")
	}
	waitFor(t, "the replaced caches to close", func() bool {
		return first.decisions.c.Closed() && runtime.NumGoroutine() <= before+4
	})
	if e.snap.Load().decisions.c.Closed() {
		t.Fatal("the serving snapshot's cache was closed")
	}
	evaluate()
}
