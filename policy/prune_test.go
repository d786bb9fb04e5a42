package policy

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestAnalyzeInputUse(t *testing.T) {
	tests := []struct {
		name, body string
		want       inputUse
	}{
		{"nothing", `x := input.principal.subject`, inputUse{principal: principalBit("subject")}},
		{"arguments", `x := input.mcp.arguments.id`, inputUse{arguments: true, mcp: mcpBit("arguments")}},
		{"mcp tool", `x := input.mcp.tool`, inputUse{mcp: mcpBit("tool")}},
		{"whole mcp", `x := input.mcp`, inputUse{arguments: true, mcp: allMCP}},
		{"claims", `x := input.principal.claims.roles`, inputUse{claims: true, principal: principalBit("claims"), claimNames: []string{"roles"}}},
		{"claim names sorted once", `x := [input.principal.claims.b, input.principal.claims.a[0], input.principal.claims.b]`,
			inputUse{claims: true, principal: principalBit("claims"), claimNames: []string{"a", "b"}}},
		{"every claim", `x := input.principal.claims`, inputUse{claims: true, principal: principalBit("claims"), allClaims: true}},
		{"dynamic claim", `x := input.principal.claims[k] if some k in ["roles"]`, inputUse{claims: true, principal: principalBit("claims"), allClaims: true}},
		{"principal fields", `x := [input.principal.kind, input.principal.scopes[_], input.principal.actor.sub]`,
			inputUse{principal: principalBit("kind") | principalBit("scopes") | principalBit("actor")}},
		{"unknown principal field", `x := input.principal.roles`, inputUse{}},
		{"whole principal", `x := input.principal`, inputUse{claims: true, wholePrincipal: true}},
		{"aliased principal", "p := input.principal\nx := p.subject", inputUse{claims: true, wholePrincipal: true}},
		{"dynamic principal key", `x := input.principal[k] if some k in ["subject"]`, inputUse{claims: true, wholePrincipal: true}},
		{"principal through a builtin", `x := object.get(input.principal, "subject", "")`, inputUse{claims: true, wholePrincipal: true}},
		{"imported principal", "import input.principal as who\nx := who.subject", inputUse{principal: principalBit("subject")}},
		{"headers", `x := input.request.headers["x-a"]`, inputUse{request: true, headers: true}},
		{"request path only", `x := input.request.path`, inputUse{request: true}},
		{"labels", `x := input.server.labels.team`, inputUse{labels: true}},
		{"dynamic key", `x := input.mcp[k] if some k in ["tool"]`, inputUse{arguments: true, mcp: allMCP}},
		{"time is nondeterministic", `x := time.now_ns()`, inputUse{nondeterministic: true}},
		{"http.send in a comprehension", `x := [r | r := http.send({"method": "GET", "url": "http://x"})]`, inputUse{nondeterministic: true}},
		{"deterministic builtin", `x := upper(input.mcp.tool)`, inputUse{mcp: mcpBit("tool")}},
		{"whole input", `x := input`, allInput},
		{"dynamic top key", `x := input[k] if k := "mcp"`, allInput},
		{"walk", `x := [p | walk(input, [p, _])]`, allInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ast.MustCompileModules(map[string]string{"p.rego": "package p\n" + tc.body + "\n"})
			got := analyzeInputUse(c.Modules)
			if got.id == 0 {
				t.Fatal("an analysis has id 0 (allInput's)")
			}
			if got.id = 0; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRBACPrunesArguments: the shipped bundle does not read arguments or
// headers, so Evaluate skips converting them, yet claims are converted.
func TestRBACPrunesArguments(t *testing.T) {
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: rbacBundle}}})
	want := inputUse{claims: true, mcp: mcpBit("kind") | mcpBit("method") | mcpBit("tool"),
		principal:  principalBit("authenticated") | principalBit("kind") | principalBit("scopes") | principalBit("method") | principalBit("claims"),
		claimNames: []string{"roles"}}
	use := e.snap.Load().use
	got := use
	if got.id = 0; !reflect.DeepEqual(got, want) {
		t.Fatalf("rbac input use = %+v, want %+v", got, want)
	}
	// The principal holds what rbac reads, prepared or not.
	in := toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument")
	in.Principal.Claims["email"], in.Principal.Subject = "alice@example.com", "alice"
	for _, prepare := range []bool{false, true} {
		if prepare {
			in = prepared(t, in)
		}
		v, err := in.toValue(use)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := v.(ast.Object).Get(ast.StringTerm("principal")).Value.(ast.Object)
		claims, _ := p.Get(ast.StringTerm("claims")).Value.(ast.Object)
		if keys := fmt.Sprint(p.Keys()); keys != `["authenticated" "claims" "kind" "method" "scopes"]` {
			t.Errorf("prepared %v: principal keys %s", prepare, keys)
		}
		if keys := fmt.Sprint(claims.Keys()); keys != `["roles"]` {
			t.Errorf("prepared %v: claims keys %s", prepare, keys)
		}
	}
}

// TestInputKeysInFieldOrder: the key terms are the field names, in the
// order the bit masks use.
func TestInputKeysInFieldOrder(t *testing.T) {
	for _, set := range []struct {
		names []string
		keys  []*ast.Term
	}{{principalFieldNames, principalKeys}, {mcpFieldNames, mcpKeys}} {
		if len(set.names) != len(set.keys) {
			t.Fatalf("%d names, %d keys", len(set.names), len(set.keys))
		}
		for i, n := range set.names {
			if !set.keys[i].Equal(ast.StringTerm(n)) {
				t.Errorf("key %d is %v, want %q", i, set.keys[i], n)
			}
		}
	}
}
