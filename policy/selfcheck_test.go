package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// shippedWithData copies the shipped bundle name into a temp dir with
// edit applied to data.mcpauthz.<name>, and returns the dir.
func shippedWithData(t *testing.T, name string, edit func(map[string]any)) string {
	t.Helper()
	files := readDir(t, filepath.Join("..", "bundles", name))
	var doc map[string]any
	if err := json.Unmarshal([]byte(files["data.json"]), &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc["mcpauthz"].(map[string]any)[name].(map[string]any))
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	files["data.json"] = string(b)
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

// TestShippedBundlesPassDataCheck: every shipped bundle defines
// data_errors and its own data passes it.
func TestShippedBundlesPassDataCheck(t *testing.T) {
	for _, name := range []string{"rbac", "abac", "guardrails", "scopes"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "bundles", name)
			if _, ok := readDir(t, dir)["data_check.rego"]; !ok {
				t.Fatalf("%s has no data_check.rego", dir)
			}
			newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
		})
	}
}

// TestWronglyTypedDataRefusesBundle: a wrong type in a shipped bundle's
// data refuses the bundle with an error naming the problem, instead of
// changing what the policy means.
func TestWronglyTypedDataRefusesBundle(t *testing.T) {
	tests := []struct {
		bundle string
		edit   func(map[string]any)
		want   string
	}{
		{"abac", func(d map[string]any) { obj(obj(d, "tools"), "readDocument")["read_only"] = "false" },
			`data.mcpauthz.abac.tools.readDocument.read_only: want a boolean, got string "false"`},
		{"guardrails", func(d map[string]any) { d["max_actors"] = "2" },
			`data.mcpauthz.guardrails.max_actors: want an integer >= 1, got string "2"`},
		{"rbac", func(d map[string]any) { d["destructive_tools"] = "deleteDocument" },
			`data.mcpauthz.rbac.destructive_tools: want a list of tool names, got string "deleteDocument"`},
		{"rbac", func(d map[string]any) { d["agents_allowed_tools"] = []any{"readDocument", "readDocumnet"} },
			`data.mcpauthz.rbac.agents_allowed_tools[1]: tool "readDocumnet" is not in tool_scopes`},
		{"scopes", func(d map[string]any) { obj(obj(obj(d, "servers"), "docs"), "tools")["readDocument"] = "docs:read" },
			`data.mcpauthz.scopes.servers.docs.tools.readDocument: want a list of OAuth scopes, got string "docs:read"`},
	}
	for _, tc := range tests {
		t.Run(tc.bundle, func(t *testing.T) {
			dir := shippedWithData(t, tc.bundle, tc.edit)
			_, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: dir}}}, nil)
			if err == nil {
				t.Fatal("New accepted wrongly typed data")
			}
			for _, want := range []string{"bundle data refused by data.mcpauthz.data_errors", "data_check.rego", tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestWronglyTypedDataOnReloadKeepsServing: a reload with bad data is
// refused and reported; the previous revision keeps serving.
func TestWronglyTypedDataOnReloadKeepsServing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	files := readDir(t, rbacBundle)
	writeFiles(t, dir, files)
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
	in := toolCall("agent_for_user", []any{"admin"}, []string{"docs:admin"}, "deleteDocument")
	if d, err := e.Evaluate(ctx, in); err != nil || d.Reason != "agent_destructive_tool" {
		t.Fatalf("before: %+v, %v", d, err)
	}

	// The bad data would let agents acting for users delete: a string is
	// not a list, so `tool in destructive_tools` never holds.
	files["data.json"] = strings.Replace(files["data.json"], `"destructive_tools": ["deleteDocument", "shareDocument"]`, `"destructive_tools": "deleteDocument"`, 1)
	if !strings.Contains(files["data.json"], `"destructive_tools": "deleteDocument"`) {
		t.Fatal("test premise: data.json edit did not apply")
	}
	writeFiles(t, dir, files)
	err := e.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "destructive_tools: want a list of tool names") {
		t.Fatalf("Reload = %v, want the data error", err)
	}
	if st := e.Status(); !st.Ready || !strings.Contains(st.LastError, "destructive_tools") || st.Failures != 1 {
		t.Errorf("status = %+v", st)
	}
	if d, err := e.Evaluate(ctx, in); err != nil || d.Reason != "agent_destructive_tool" {
		t.Fatalf("after the refused reload: %+v, %v (want the previous policy's denial)", d, err)
	}
}

// TestDataErrorsContract: the rule may live in any package, must be a set
// or array of strings, and a rule that cannot be evaluated refuses too.
func TestDataErrorsContract(t *testing.T) {
	const decision = "package mcpauthz\ndecision := {\"allow\": true}\n"
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprintf("p%02d", i))
	}
	tests := []struct {
		name  string
		check string // a module added to the bundle ("" for none)
		want  []string
	}{
		{"no rule", "", nil},
		{"empty set", "package mcpauthz\ndata_errors contains x if { some x in data.none }\n", nil},
		{"empty array", "package other\ndata_errors := []\n", nil},
		{"problems", "package other.sub\ndata_errors contains \"b\" if true\ndata_errors contains \"a\" if true\n",
			[]string{"bundle data refused by data.other.sub.data_errors (", "check.rego): a; b"}},
		{"array", "package mcpauthz\ndata_errors := [\"only\"]\n", []string{"data.mcpauthz.data_errors", ": only"}},
		{"reads data", "package mcpauthz\ndata_errors contains \"n must be a number\" if not is_number(data.mcpauthz.n)\n",
			[]string{"n must be a number"}},
		{"many", "package mcpauthz\ndata_errors := {" + strings.Join(many, ", ") + "}\n",
			[]string{"p00; p01;", "p09; and 2 more"}},
		{"not strings", "package mcpauthz\ndata_errors := {1}\n", []string{"data.mcpauthz.data_errors", "want a set of strings, found number element 1"}},
		{"not a set", "package mcpauthz\ndata_errors := \"bad\"\n", []string{"want a set of strings, got string"}},
		{"builtin error", "package mcpauthz\ndata_errors contains x if { x := sprintf(\"%d\", [to_number(\"x\")]) }\n",
			[]string{"data.mcpauthz.data_errors", "to_number"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"policy.rego": decision, "data.json": `{"mcpauthz": {"n": "1"}}`}
			if tc.check != "" {
				files["check.rego"] = tc.check
			}
			dir := t.TempDir()
			writeFiles(t, dir, files)
			e, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: dir}}}, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if d, err := e.Evaluate(context.Background(), &Input{}); err != nil || !d.Allow {
					t.Fatalf("Evaluate = %+v, %v", d, err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted the bundle")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
