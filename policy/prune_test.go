package policy

import (
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestAnalyzeInputUse(t *testing.T) {
	tests := []struct {
		name, body string
		want       inputUse
	}{
		{"nothing", `x := input.principal.subject`, inputUse{}},
		{"arguments", `x := input.mcp.arguments.id`, inputUse{arguments: true, mcp: mcpBit("arguments")}},
		{"mcp tool", `x := input.mcp.tool`, inputUse{mcp: mcpBit("tool")}},
		{"whole mcp", `x := input.mcp`, inputUse{arguments: true, mcp: allMCP}},
		{"claims", `x := input.principal.claims.roles`, inputUse{claims: true}},
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
			if got := analyzeInputUse(c.Modules); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRBACPrunesArguments: the shipped bundle does not read arguments or
// headers, so Evaluate skips converting them, yet claims are converted.
func TestRBACPrunesArguments(t *testing.T) {
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: rbacBundle}}})
	want := inputUse{claims: true, mcp: mcpBit("kind") | mcpBit("method") | mcpBit("tool")}
	if got := e.snap.Load().use; got != want {
		t.Fatalf("rbac input use = %+v, want %+v", got, want)
	}
}
