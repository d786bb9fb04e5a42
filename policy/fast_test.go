package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// shippedBundles are the bundles the differential test covers.
var shippedBundles = []string{"rbac", "abac", "guardrails", "scopes"}

// TestFastPathMatchesRego is the differential test of the fast path: for
// every shipped bundle, over a generated corpus (every method x message
// kind x principal kind x roles x tool, with argument shapes, URIs, scopes,
// organizations, actor chains, authentication and claims varied) plus
// every input the bundle's own Rego tests evaluate the decision with
// (their hostile section included), the fast path's decision (or error)
// on the input as the engine converts it (parts the policy does not read
// left out) must equal plain rego.PreparedEvalQuery.Eval's on the whole
// input.
func TestFastPathMatchesRego(t *testing.T) {
	ctx := context.Background()
	for _, name := range shippedBundles {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "bundles", name)
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: -1})
			snap := e.snap.Load()
			corpus, reference := generatedCorpus(t, dir, snap.use)
			harvested := testInputs(t, dir)
			if len(harvested) < 2 {
				t.Fatalf("harvested %d inputs from the bundle's tests, want more", len(harvested))
			}
			corpus, reference = append(corpus, harvested...), append(reference, harvested...)
			counts := map[string]int{}
			native := 0
			for i, in := range corpus {
				if snap.fast.native != nil {
					if _, ok := snap.fast.native.eval(in); ok {
						native++
					}
				}
				got, gerr := snap.evalFast(ctx, in)
				want, werr := snap.evalRego(ctx, reference[i])
				if !sameOutcome(got, gerr, want, werr) {
					t.Fatalf("input %d: fast path %+v (err %v), rego %+v (err %v)\ninput: %v\nwhole: %v", i, got, gerr, want, werr, in, reference[i])
				}
				counts[outcome(want, werr)]++
			}
			// The corpus must reach allows and many denial reasons.
			if counts["allow:allowed"] == 0 || len(counts) < 6 {
				t.Fatalf("corpus too narrow: %v", counts)
			}
			t.Logf("%d inputs (%d from the bundle's tests, %d decided natively): %v", len(corpus), len(harvested), native, counts)
			if name == "rbac" && native < counts["allow:allowed"]/3 {
				t.Fatalf("only %d of %d allowed tool calls decided natively", native, counts["allow:allowed"])
			}

			// Pooled state must not leak between concurrent evaluations.
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := w; i < len(corpus); i += 7 {
						got, gerr := snap.evalFast(ctx, corpus[i])
						want, werr := snap.evalRego(ctx, reference[i])
						if !sameOutcome(got, gerr, want, werr) {
							t.Errorf("concurrent input %d: fast %+v (%v), rego %+v (%v)", i, got, gerr, want, werr)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func outcome(d Decision, err error) string {
	switch {
	case err != nil:
		return "error"
	case d.Allow:
		return "allow:" + d.Reason
	}
	return d.Reason
}

func sameOutcome(got Decision, gerr error, want Decision, werr error) bool {
	if gerr != nil || werr != nil {
		return gerr != nil && werr != nil && gerr.Error() == werr.Error()
	}
	return reflect.DeepEqual(got, want)
}

// corpusScale thins the generated corpus: every 5th combination of the
// method x kind x principal kind x roles x tool product and every 15th tool
// call of the principal kind x roles x tool x scopes x arguments product by
// default (about 13,000 inputs per bundle), ten times fewer under the race
// detector or -short, and every method combination (and every 3rd tool
// call) with MCPAUTHZ_DIFF_FULL=1.
func corpusScale() int {
	switch {
	case os.Getenv("MCPAUTHZ_DIFF_FULL") == "1":
		return 1
	case raceEnabled || testing.Short():
		return 50
	}
	return 5
}

// generatedCorpus builds inputs over the dimensions the shipped policies
// decide on. Tools come from the bundle's data plus unknown and
// case-variant names. Each input is converted twice: for use (what the
// engine evaluates: parts the policy does not read left out) and whole
// (the reference).
func generatedCorpus(t *testing.T, dir string, use inputUse) (pruned, whole []ast.Value) {
	t.Helper()
	tools := append(bundleTools(t, dir), "unknownTool", "READDOCUMENT", "")
	methods := []string{"tools/call", "tools/list", "initialize", "ping", "logging/setLevel",
		"resources/read", "resources/list", "resources/subscribe", "prompts/get", "prompts/list",
		"completion/complete", "notifications/initialized", "notifications/cancelled", "sampling/createMessage", "bogus/x", ""}
	kinds := []string{"request", "notification", "response", "stream", "end_session", "", "Request"}
	pkinds := []string{"human", "agent_for_user", "agent", "anonymous", "robot"}
	roles := [][]any{nil, {}, {"viewer"}, {"editor"}, {"admin"}, {"viewer", "admin"}, {"root", float64(7)}}
	rolesRaw := []any{"admin", map[string]any{"admin": true}} // not arrays
	scopes := [][]string{nil, {"docs:read"}, {"docs:read", "docs:write"}, {"docs:read", "docs:write", "docs:admin"}, {"openid"}}
	args := []string{``, `null`, `{}`, `{"id":"doc-1"}`, `{"id":"acme/doc-1"}`, `{"id":"globex/doc-1"}`, `{"id":"doc-2"}`,
		`{"id":"doc-9"}`, `{"id":"../doc-1"}`, `{"id":"doc-1/"}`, `{"id":"acme/doc-1/x"}`, `{"id":5}`, `{"Id":"doc-1"}`,
		`{"id":"doc-1","content":"x"}`, `{"title":"t"}`, `{"title":"t","content":7}`, `{"id":"doc-3","with":"bob"}`,
		`{"documents":["doc-1","doc-3"]}`, `{"documents":["doc-1","doc-2"]}`, `{"documents":["doc-1",{"id":"doc-2"}]}`,
		`{"documents":["doc-1"],"options":{"baseline":"doc-3","ignoreWhitespace":true}}`,
		`{"documents":["doc-1"],"options":{"baseline":"globex/doc-2"}}`, `{"documents":["doc-1"],"options.baseline":"doc-2"}`,
		`{"id":"doc\uff0f1"}`, `{"id":"doc-1","extra":{"nested":[1,2,{"x":null}]}}`, `[1,2]`, `"doc-1"`, `{"id":"` + strings.Repeat("a", 70) + `"}`}
	uris := []string{"", "docs://acme/doc-1", "docs://globex/doc-2", "docs://acme/doc-9", "docs://acme/../doc-1", "docs://doc-1", "file:///etc/passwd"}
	orgs := []string{"acme", "globex", ""}
	methodsAuth := []string{"jwt", "mtls", "none"}
	r := rand.New(rand.NewPCG(1, uint64(len(dir))))
	step := corpusScale()
	add := func(method, kind, pk string, ri int, tool string, sc []string, arg string) {
		in := &Input{Version: InputVersion,
			Request: Request{ID: "r", Method: "POST", Path: "/mcp", Host: "docs.example.com",
				Headers: map[string]string{"content-type": "application/json"}},
			MCP: MCP{ProtocolVersion: "2025-06-18", Transport: "streamable_http", Kind: kind, Method: method},
			Principal: Principal{Authenticated: r.IntN(8) != 0, Kind: pk, Subject: "alice", UserID: "alice",
				Org: orgs[r.IntN(len(orgs))], Method: methodsAuth[r.IntN(len(methodsAuth))],
				Scopes: sc, Claims: map[string]any{}},
			Server: Server{ID: "docs", Resource: "https://docs.example.com/mcp",
				Scopes: []string{"docs:read", "docs:write", "docs:admin"}, CredentialMode: "service_account",
				CredentialModes: []string{"service_account", "delegated"}},
		}
		if r.IntN(4) == 0 {
			in.Server.ID = "other"
		}
		switch method {
		case "tools/call":
			in.MCP.Tool = tool
		case "prompts/get", "completion/complete":
			in.MCP.Prompt = tool
		}
		if arg != "" {
			in.MCP.Arguments = json.RawMessage(arg)
		}
		in.MCP.URI = uris[r.IntN(len(uris))]
		if ri < len(roles) {
			if roles[ri] != nil {
				in.Principal.Claims["roles"] = roles[ri]
			}
		} else {
			in.Principal.Claims["roles"] = rolesRaw[ri-len(roles)]
		}
		switch r.IntN(6) {
		case 0:
			in.Principal.Actor = &Actor{Subject: "summarizer", ClientID: "bot"}
		case 1:
			in.Principal.Actor = &Actor{Subject: "drafter"}
			in.Principal.Chain = []Actor{{Subject: "orchestrator"}, {Subject: "planner"}}
		case 2:
			in.Principal.Actor = &Actor{Subject: "janitor"}
			in.Principal.Chain = []Actor{{Subject: "orchestrator"}}
		}
		if r.IntN(3) == 0 { // claims no shipped bundle reads
			in.Principal.Claims["email"] = "alice@example.com"
			in.Principal.Claims["groups"] = []any{"eng", map[string]any{"admin": true}}
		}
		if r.IntN(10) == 0 {
			in.Principal.Claims = nil
		}
		if r.IntN(2) == 0 {
			in.PreparedServer = PrepareServer(in.Server)
		}
		w, err := in.toValue(allInput)
		if err != nil {
			return // arguments that are not JSON objects fail before policy
		}
		v, err := in.toValue(use)
		if err != nil {
			t.Fatalf("converted whole but not for the policy's use: %v", err)
		}
		pruned, whole = append(pruned, v), append(whole, w)
	}
	// Every method x kind x principal kind x roles x tool.
	n := 0
	for _, method := range methods {
		for _, kind := range kinds {
			for _, pk := range pkinds {
				for ri := range len(roles) + len(rolesRaw) {
					for _, tool := range tools {
						if n++; step > 1 && n%step != 0 {
							continue
						}
						add(method, kind, pk, ri, tool, scopes[r.IntN(len(scopes))], args[r.IntN(len(args))])
					}
				}
			}
		}
	}
	// Tool calls, the hot path, in depth: x scopes x argument shapes.
	for _, pk := range pkinds {
		for ri := range len(roles) + len(rolesRaw) {
			for _, tool := range tools {
				for _, sc := range scopes {
					for _, arg := range args {
						if n++; n%(3*step) != 0 {
							continue
						}
						add("tools/call", "request", pk, ri, tool, sc, arg)
					}
				}
			}
		}
	}
	return pruned, whole
}

// bundleTools reads the tool names of a shipped bundle's data.
func bundleTools(t *testing.T, dir string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	var data struct{ Mcpauthz map[string]json.RawMessage }
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if strings.HasSuffix(k, "Document") || strings.HasSuffix(k, "Documents") {
					seen[k] = true
				}
				walk(k, x)
			}
		case []any:
			for _, x := range v {
				if s, ok := x.(string); ok && (strings.HasSuffix(s, "Document") || strings.HasSuffix(s, "Documents")) {
					seen[s] = true
				}
			}
		}
	}
	for _, v := range data.Mcpauthz {
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			t.Fatal(err)
		}
		walk("", x)
	}
	tools := make([]string, 0, len(seen))
	for k := range seen {
		tools = append(tools, k)
	}
	sort.Strings(tools)
	if len(tools) < 3 {
		t.Fatalf("found tools %v in %s", tools, dir)
	}
	return tools
}

// testInputs runs every test of the bundle with a tracer and returns each
// distinct input the decision rule was entered with.
func testInputs(t *testing.T, dir string) []ast.Value {
	t.Helper()
	ctx := context.Background()
	tr := &inputTracer{path: ast.MustParseRef(DefaultQuery), seen: map[string]bool{}}
	comp := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	mods := map[string]*ast.Module{}
	entries, _ := os.ReadDir(dir)
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".rego") {
			src, err := os.ReadFile(filepath.Join(dir, en.Name()))
			if err != nil {
				t.Fatal(err)
			}
			mods[en.Name()] = ast.MustParseModuleWithOpts(string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		}
	}
	if comp.Compile(mods); comp.Failed() {
		t.Fatal(comp.Errors)
	}
	var tests []ast.Ref
	for _, m := range comp.Modules {
		for _, rule := range m.Rules {
			if strings.HasPrefix(rule.Head.Name.String(), "test_") || strings.HasPrefix(rule.Ref().String(), "test_") {
				tests = append(tests, rule.Path())
			}
		}
	}
	for _, test := range tests {
		rs := rego.New(rego.Query(test.String()), rego.Load([]string{dir}, nil), rego.SetRegoVersion(ast.RegoV1),
			rego.QueryTracer(tr))
		if _, err := rs.Eval(ctx); err != nil {
			t.Fatalf("%s: %v", test, err)
		}
	}
	if len(tests) == 0 {
		t.Fatalf("no tests in %s", dir)
	}
	return tr.inputs
}

type inputTracer struct {
	path   ast.Ref
	seen   map[string]bool
	inputs []ast.Value
}

func (*inputTracer) Enabled() bool               { return true }
func (*inputTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }
func (tr *inputTracer) TraceEvent(e topdown.Event) {
	if e.Op != topdown.EnterOp {
		return
	}
	r, ok := e.Node.(*ast.Rule)
	if !ok || !r.Path().Equal(tr.path) {
		return
	}
	in := e.Input()
	if in == nil {
		return
	}
	if k := in.String(); !tr.seen[k] {
		tr.seen[k] = true
		tr.inputs = append(tr.inputs, in.Value)
	}
}

// TestFastPathSmallPolicies covers what the shipped bundles do not: `with`
// over constant rules, conflicts, nondeterministic builtins, undefined and
// boolean results, base documents shadowed by nothing.
func TestFastPathSmallPolicies(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, policy string
		inputs       []string
	}{
		{"constant rule and with data", `package mcpauthz
roles := {"a": ["t1"], "b": ["t2"]}
limit := count(data.mcpauthz.cfg.tools)
decision := {"allow": ok, "reason": sprintf("%d", [limit])}
ok if input.mcp.tool in roles[input.principal.kind]
decision_with := x if { x := ok with roles as {"a": ["t2"]} }
`, []string{`{"mcp":{"tool":"t1"},"principal":{"kind":"a"}}`, `{"mcp":{"tool":"t2"},"principal":{"kind":"b"}}`, `{}`}},
		{"with input inside the policy over a constant", `package mcpauthz
k := "a"
inner := input.principal.kind
decision := {"allow": x == k} if { x := inner with input.principal.kind as k }
`, []string{`{"principal":{"kind":"b"}}`}},
		{"with data over a constant at depth", `package mcpauthz
k := data.mcpauthz.cfg.name
decision := {"allow": input.v == y} if { y := k with data.mcpauthz.cfg.name as "other" }
`, []string{`{"v":"other"}`, `{"v":"cfg"}`}},
		{"conflict", `package mcpauthz
decision := {"allow": true} if input.a
decision := {"allow": false} if input.b
`, []string{`{"a":true,"b":true}`, `{"a":true}`, `{"b":true}`, `{}`}},
		{"undefined and boolean", `package mcpauthz
decision := true if input.a == 1
decision := false if input.a == 2
`, []string{`{"a":1}`, `{"a":2}`, `{"a":3}`}},
		{"time is not constant", `package mcpauthz
now := time.now_ns()
decision := {"allow": now > 0, "reason": "t"}
`, []string{`{}`}},
		{"constant that errors", `package mcpauthz
bad := to_number("x")
decision := {"allow": true, "reason": "ok"} if not bad
`, []string{`{}`}},
		{"constant undefined", `package mcpauthz
nothing := data.mcpauthz.cfg.missing
decision := {"allow": false, "reason": "r"} if not nothing
`, []string{`{}`}},
		{"native: solutions with different values conflict", `package mcpauthz
decision := {"allow": true, "reason": r} if {
	some r in input.roles
	startswith(r, "a")
} else := {"allow": false, "reason": "none"}
`, []string{`{"roles":["ab","ac"]}`, `{"roles":["ab","b"]}`, `{"roles":["b"]}`, `{"roles":"ab"}`, `{}`, `{"roles":{"x":"ab","y":"ab"}}`}},
		{"native: built-in errors, negation, sets and objects", `package mcpauthz
decision := {"allow": true, "reason": "num"} if {
	x := input.v
	count(x) > 1
	not input.deny
} else := {"allow": true, "reason": "member"} if {
	some k, v in input.obj
	v in data.mcpauthz.cfg.tools
	k == "a"
} else := {"allow": true, "reason": "set"} if {
	input.s in {"x", "y"}
	not regex.match("^x", input.s)
} else := {"allow": false, "reason": "rest"}
`, []string{`{"v":[1,2]}`, `{"v":5}`, `{"v":"abc","deny":true}`, `{"obj":{"a":2,"b":9}}`, `{"obj":{"b":2}}`, `{"obj":[2]}`, `{"s":"y"}`, `{"s":"x"}`, `{"s":1}`, `{"v":{"a":1,"b":2}}`}},
		{"native: every over objects, arrays, sets and non-collections", `package mcpauthz
limits := {"a": 1, "b": 2}
decision := {"allow": true, "reason": "every"} if {
	x := input.x
	every k, v in x {
		v <= object.get(limits, k, 0)
	}
	every y in input.ys {
		every z in y {
			is_string(z)
		}
	}
} else := {"allow": false, "reason": "no"}
`, []string{`{"x":{"a":1},"ys":[["s"],[]]}`, `{"x":{"a":2},"ys":[]}`, `{"x":[1],"ys":[]}`, `{"x":{},"ys":{}}`,
			`{"x":"str","ys":[]}`, `{"x":{"b":2},"ys":[["s",1]]}`, `{"ys":[]}`, `{"x":{"a":1},"ys":[["s"],"t"]}`, `{"x":{"a":1},"ys":5}`}},
		{"native: a branch outside the subset stops the native prefix", `package mcpauthz
decision := {"allow": true, "reason": "first"} if input.a == 1
else := {"allow": true, "reason": "fn"} if f(input.a)
else := {"allow": true, "reason": "third"} if input.a == 3
else := {"allow": false, "reason": "no"}
f(x) if x == 2
`, []string{`{"a":1}`, `{"a":2}`, `{"a":3}`, `{"a":4}`}},
		{"native: several definitions are topdown's", `package mcpauthz
decision := {"allow": true, "reason": "a"} if input.a
decision := {"allow": true, "reason": "b"} if input.b
default decision := {"allow": false, "reason": "default"}
`, []string{`{"a":true}`, `{"a":true,"b":true}`, `{}`}},
		{"constant decision object", `package mcpauthz
allowed := {"allow": true, "reason": "allowed", "scopes": ["a", "b"]}
decision := allowed if input.ok
else := {"allow": false, "reason": "no"}
`, []string{`{"ok":true}`, `{"ok":false}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"p.rego": tc.policy,
				"data.json": `{"mcpauthz":{"cfg":{"name":"cfg","tools":[1,2,3]}}}`})
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: -1})
			snap := e.snap.Load()
			if wantNative := !strings.Contains(tc.name, "several"); strings.HasPrefix(tc.name, "native:") && wantNative != (snap.fast.native != nil) {
				t.Fatalf("native query compiled: %v, want %v", snap.fast.native != nil, wantNative)
			}
			for _, raw := range tc.inputs {
				in := ast.MustParseTerm(raw).Value
				for range 2 { // the second run reuses pooled state
					got, gerr := snap.evalFast(ctx, in)
					want, werr := snap.evalRego(ctx, in)
					if !sameOutcome(got, gerr, want, werr) {
						t.Fatalf("%s: fast %+v (%v), rego %+v (%v)", raw, got, gerr, want, werr)
					}
				}
			}
		})
	}
}

// TestConstRules pins the constant analysis.
func TestConstRules(t *testing.T) {
	c := ast.MustCompileModulesWithOpts(map[string]string{"p.rego": `package p
a := 1
b := a + data.x
c := input.y
d := c
e := f(1)
f(x) := x + 1
g := h(1)
h(x) := x + input.z
i := time.now_ns()
j := y if { y := k with data.x as 2 }
k := data.x
l contains 1
m := n
n := {x | some x in l}
o if a == 1
o if b == 2
q[x] := y if {
	some x, y in {"a": 1}
}
r[x] := y if {
	some x, y in input.z
}
`}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	var got []string
	for _, r := range constRules(c) {
		got = append(got, r.String())
	}
	sort.Strings(got)
	want := []string{"data.p.a", "data.p.b", "data.p.e", "data.p.k", "data.p.l", "data.p.m", "data.p.n", "data.p.o", "data.p.q"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("constant rules %v, want %v", got, want)
	}
}

// TestFrameCache checks the virtual cache's frame semantics.
func TestFrameCache(t *testing.T) {
	c := &frameCache{}
	consts := &constLayer{}
	ref := func(s string) ast.Ref { return ast.MustParseRef(s) }
	consts.put(ref("data.p.k"), ast.StringTerm("const"))
	consts.put(ref("data.p.u"), nil)
	c.reset(consts)
	if v, u := c.Get(ref("data.p.k")); v == nil || u || v.Value.Compare(ast.String("const")) != 0 {
		t.Fatalf("const: %v %v", v, u)
	}
	if v, u := c.Get(ref("data.p.u")); v != nil || !u {
		t.Fatalf("const undefined: %v %v", v, u)
	}
	c.Put(ref("data.p.x"), ast.IntNumberTerm(1))
	c.Put(ref("data.p.y"), nil)
	c.Push()
	if v, _ := c.Get(ref("data.p.x")); v != nil {
		t.Fatal("a pushed frame sees the frame below")
	}
	if v, _ := c.Get(ref("data.p.k")); v != nil {
		t.Fatal("the constant layer answers under with")
	}
	c.Put(ref("data.p.x"), ast.IntNumberTerm(2))
	if v, _ := c.Get(ref("data.p.x")); v.Value.Compare(ast.Number("2")) != 0 {
		t.Fatalf("pushed frame value %v", v)
	}
	c.Pop()
	if v, _ := c.Get(ref("data.p.x")); v.Value.Compare(ast.Number("1")) != 0 {
		t.Fatalf("after pop %v", v)
	}
	if v, u := c.Get(ref("data.p.y")); v != nil || !u {
		t.Fatalf("undefined entry %v %v", v, u)
	}
	c.Put(ref("data.p.x"), ast.IntNumberTerm(3))
	if v, _ := c.Get(ref("data.p.x")); v.Value.Compare(ast.Number("3")) != 0 {
		t.Fatalf("overwrite %v", v)
	}
	if v, _ := c.Get(ref("data.p")); v != nil {
		t.Fatal("a prefix is not an entry")
	}
	if n := len(c.Keys()); n != 1 {
		t.Fatalf("keys %d", n)
	}
	c.reset(nil)
	if v, _ := c.Get(ref("data.p.x")); v != nil {
		t.Fatal("reset kept an entry")
	}
}

// TestReshapedBundlesMatchOriginal: the shipped bundles whose rules were
// reshaped for the fast path (a hot first branch, constant decision
// objects) decide exactly as their original text did
// (testdata/reference/<bundle>/policy.rego, with the same data and
// data_check) over the generated corpus and every input of the bundle's
// tests.
func TestReshapedBundlesMatchOriginal(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"rbac", "abac"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "bundles", name)
			ref := t.TempDir()
			files := readDir(t, dir)
			delete(files, "policy_test.rego")
			orig, err := os.ReadFile(filepath.Join("testdata", "reference", name, "policy.rego"))
			if err != nil {
				t.Fatal(err)
			}
			files["policy.rego"] = string(orig)
			writeFiles(t, ref, files)
			cur := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, DecisionCacheSize: -1}).snap.Load()
			old := newEngine(t, Config{Bundles: []BundleSource{{Path: ref}}, DecisionCacheSize: -1}).snap.Load()
			generated, _ := generatedCorpus(t, dir, allInput)
			corpus := append(generated, testInputs(t, dir)...)
			for i, in := range corpus {
				got, gerr := cur.evalFast(ctx, in)
				want, werr := old.evalRego(ctx, in)
				if !sameOutcome(got, gerr, want, werr) {
					t.Fatalf("input %d: reshaped %+v (err %v), original %+v (err %v)\ninput: %v", i, got, gerr, want, werr, in)
				}
			}
			t.Logf("%d inputs decided alike", len(corpus))
		})
	}
}
