package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func prepared(t *testing.T, in *Input) *Input {
	t.Helper()
	in.PreparedPrincipal = PreparePrincipal(in.Principal)
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

// TestDecisionSharedByWhatPolicyReads: the shipped rbac bundle reads the
// principal only through constant paths (kind, authenticated, method,
// scopes, claims.roles), so a second user who looks the same to it gets
// the first one's cached decision; a user with another role does not.
func TestDecisionSharedByWhatPolicyReads(t *testing.T) {
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: rbacBundle}}, DecisionCacheSize: 1000})
	ctx := context.Background()
	var server *PreparedServer // one configured server, prepared once
	user := func(sub string, roles ...any) *Input {
		in := toolCall("human", roles, []string{"docs:read"}, "readDocument")
		in.Principal.Subject, in.Principal.UserID, in.Principal.UserKey = sub, sub, "iss|"+sub
		in.Principal.Claims["sub"], in.Principal.Claims["jti"] = sub, "jti-"+sub
		in = prepared(t, in)
		if server == nil {
			server = in.PreparedServer
		}
		in.PreparedServer = server
		return in
	}
	eval := func(in *Input) Decision {
		t.Helper()
		d, err := e.Evaluate(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		e.snap.Load().decisionsWait()
		return d
	}
	alice := eval(user("alice", "viewer"))
	before := e.DecisionCacheStats()
	bob := eval(user("bob", "viewer"))
	if st := e.DecisionCacheStats(); st.Hits != before.Hits+1 || !reflect.DeepEqual(alice, bob) {
		t.Fatalf("bob (same roles and scopes) did not share alice's decision: stats %+v -> %+v, %+v vs %+v", before, st, alice, bob)
	}
	before = e.DecisionCacheStats()
	if carol := eval(user("carol", "nobody")); carol.Allow || e.DecisionCacheStats().Hits != before.Hits {
		t.Fatalf("carol (another role) got a shared decision: %+v", carol)
	}
}

// TestPreparedPrincipalConvertedOnFirstMiss: a prepared principal is
// converted by the first evaluation that runs the policy and never by a
// decision-cache hit; concurrent first evaluations agree and keep one
// converted form; a principal whose claim the policy reads cannot be
// converted fails every evaluation that runs the policy (fail closed), and
// nothing is kept.
func TestPreparedPrincipalConvertedOnFirstMiss(t *testing.T) {
	ctx := context.Background()
	user := func(sub string, claims map[string]any) *Input {
		in := toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument")
		in.Principal.Subject = sub
		for k, v := range claims {
			in.Principal.Claims[k] = v
		}
		return prepared(t, in)
	}
	cached := newEngine(t, Config{Bundles: []BundleSource{{Path: rbacBundle}}, DecisionCacheSize: 1000})
	alice, bob := user("alice", nil), user("bob", nil)
	bob.PreparedServer = alice.PreparedServer
	for _, in := range []*Input{alice, bob} {
		if d, err := cached.Evaluate(ctx, in); err != nil || !d.Allow {
			t.Fatalf("%s: %+v %v", in.Principal.Subject, d, err)
		}
		cached.snap.Load().decisionsWait()
	}
	if alice.PreparedPrincipal.conv.Load() == nil {
		t.Error("the evaluation that ran the policy did not keep the converted principal")
	}
	if bob.PreparedPrincipal.conv.Load() != nil {
		t.Error("a decision-cache hit converted the principal")
	}

	uncached := newEngine(t, Config{Bundles: []BundleSource{{Path: rbacBundle}}, DecisionCacheSize: -1})
	carol := user("carol", nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if d, err := uncached.Evaluate(ctx, carol); err != nil || !d.Allow {
				t.Errorf("carol: %+v %v", d, err)
			}
		})
	}
	wg.Wait()
	kept := carol.PreparedPrincipal.conv.Load()
	if kept == nil {
		t.Fatal("not converted")
	}
	if _, err := uncached.Evaluate(ctx, carol); err != nil || carol.PreparedPrincipal.conv.Load() != kept {
		t.Fatalf("converted again: %v", err)
	}

	broken := user("mallory", map[string]any{"roles": []any{"viewer", make(chan int)}})
	for range 2 {
		if d, err := uncached.Evaluate(ctx, broken); err == nil || d.Allow {
			t.Fatalf("an unconvertible principal was evaluated: %+v %v", d, err)
		}
	}
	if broken.PreparedPrincipal.conv.Load() != nil {
		t.Error("a failed conversion was kept")
	}
}

// TestDecisionCacheMatchesUncached: for policies that read the principal
// in every way the analysis distinguishes (a field, a claim by name, every
// claim, an alias of the whole principal, a variable key, the actor and
// the chain), decisions with the decision cache equal decisions without
// it over principals that differ in one part at a time, evaluated twice in
// shuffled order so that hits are exercised.
func TestDecisionCacheMatchesUncached(t *testing.T) {
	policies := map[string]string{
		"field":     `decision := {"allow": input.principal.subject == "alice", "reason": input.principal.kind}`,
		"claim":     `decision := {"allow": "admin" in input.principal.claims.roles, "reason": sprintf("%v", [input.principal.claims.roles])}`,
		"claims":    `decision := {"allow": count(input.principal.claims) > 4, "reason": sprintf("%d", [count(input.principal.claims)])}`,
		"alias":     "p := input.principal\ndecision := {\"allow\": p.user_key == \"iss|alice\", \"reason\": p.subject}",
		"var key":   `decision := {"allow": true, "reason": concat(",", [k | some k in ["subject", "user_key"]; input.principal[k] == "alice"])}`,
		"claim var": `decision := {"allow": true, "reason": concat(",", [k | some k in ["email", "sub"]; input.principal.claims[k] == "alice@example.com"])}`,
		"actor":     `decision := {"allow": input.principal.actor.sub == "bot", "reason": sprintf("%v", [input.principal.chain])}`,
		"nested":    `decision := {"allow": input.principal.claims.org.tier == "gold", "reason": sprintf("%v", [input.principal.claims.org])}`,
	}
	var inputs []*Input
	for i := range 48 {
		in := toolCall([]string{"human", "agent_for_user"}[i%2], [][]any{{"viewer"}, {"admin"}, {"viewer", "admin"}}[i%3], []string{"docs:read"}, "readDocument")
		sub := []string{"alice", "bob", "carol", "dave"}[i%4]
		in.Principal.Subject, in.Principal.UserID, in.Principal.UserKey = sub, sub, "iss|"+[]string{"alice", "bob"}[i/4%2]
		if i%5 == 0 {
			in.Principal.Claims["email"] = sub + "@example.com"
		}
		if i%6 < 3 {
			in.Principal.Claims["org"] = map[string]any{"tier": []string{"gold", "silver"}[i%2], "n": json.Number(fmt.Sprint(i % 3))}
		}
		if i%7 < 4 {
			in.Principal.Actor = &Actor{Subject: []string{"bot", "other"}[i%2], ClientID: "c"}
			in.Principal.Chain = []Actor{*in.Principal.Actor}
		}
		inputs = append(inputs, prepared(t, in))
		inputs[i].PreparedServer = inputs[0].PreparedServer // one configured server
	}
	ctx := context.Background()
	for name, body := range policies {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"p.rego": "package mcpauthz\n" + body + "\n"})
			cached := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: 1000})
			plain := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: -1})
			if cached.snap.Load().decisions == nil {
				t.Fatal("policy not memoized")
			}
			order := append(slices.Clone(inputs), inputs...)
			rand.New(rand.NewPCG(1, uint64(len(name)))).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for i, in := range order {
				got, err := cached.Evaluate(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				want, err := plain.Evaluate(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				// And plain Rego over the whole input (nothing left out).
				whole, err := in.toValue(allInput)
				if err != nil {
					t.Fatal(err)
				}
				ref, err := plain.snap.Load().evalRego(ctx, whole)
				if err != nil {
					t.Fatal(err)
				}
				if ref.Revision = want.Revision; !reflect.DeepEqual(ref, want) {
					t.Fatalf("input %d (%s): evaluated %+v, rego over the whole input %+v", i, in.Principal.Subject, want, ref)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("input %d (%s): cached %+v, uncached %+v", i, in.Principal.Subject, got, want)
				}
				cached.snap.Load().decisionsWait()
			}
			if cached.DecisionCacheStats().Hits == 0 {
				t.Fatal("no decision was served from the cache")
			}
		})
	}
}
