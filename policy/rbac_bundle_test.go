package policy

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
)

const rbacBundle = "../bundles/rbac"

// TestRBACBundleRegoTests runs bundles/rbac/*_test.rego like `opa test -b
// bundles/rbac`, so `go test ./policy/` proves the shipped bundle passes.
func TestRBACBundleRegoTests(t *testing.T) {
	ctx := context.Background()
	bundles, store, err := tester.LoadBundlesWithParserOptions([]string{rbacBundle}, nil,
		ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		t.Fatalf("load %s: %v", rbacBundle, err)
	}
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Abort(ctx, txn)

	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		SetBundles(bundles).
		CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("run rego tests: %v", err)
	}
	ran := 0
	for r := range ch {
		ran++
		if r.Skip {
			t.Errorf("%s.%s: skipped (todo_ tests are not allowed in shipped bundles)", r.Package, r.Name)
			continue
		}
		if !r.Pass() {
			t.Errorf("%s:%d %s.%s: FAIL (error: %v)\n%s", r.Location.File, r.Location.Row, r.Package, r.Name, r.Error, r.Output)
		}
	}
	if ran < 20 {
		t.Fatalf("ran %d rego tests, want at least 20", ran)
	}
	t.Logf("ran %d rego tests", ran)
}
