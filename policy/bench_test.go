package policy

import (
	"context"
	"testing"
)

// BenchmarkEvaluate measures one decision with the shipped rbac bundle and a
// realistic tools/call input (headers, arguments, claims).
func BenchmarkEvaluate(b *testing.B) {
	e, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: rbacBundle}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := toolCall("human", []any{"editor"}, []string{"openid", "docs:read", "docs:write"}, "updateDocument")
	ctx := context.Background()
	d, err := e.Evaluate(ctx, in)
	if err != nil || !d.Allow {
		b.Fatalf("decision %+v, err %v", d, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInputToValue isolates the input conversion.
func BenchmarkInputToValue(b *testing.B) {
	in := toolCall("human", []any{"editor"}, []string{"openid", "docs:read", "docs:write"}, "updateDocument")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.toValue(allInput); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateParallel checks that concurrent evaluations scale.
func BenchmarkEvaluateParallel(b *testing.B) {
	e, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: rbacBundle}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := toolCall("human", []any{"editor"}, []string{"openid", "docs:read", "docs:write"}, "updateDocument")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Evaluate(context.Background(), in); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEvaluatePrepared is the server's hot path: principal and server
// converted once, per-request parts converted per call; "rego" evaluates
// every time, "memoized" is the default decision cache.
func BenchmarkEvaluatePrepared(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"rego", -1}, {"memoized", 0}} {
		b.Run(bc.name, func(b *testing.B) { benchmarkPrepared(b, bc.size) })
	}
}

func benchmarkPrepared(b *testing.B, cacheSize int) {
	e, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: rbacBundle}}, DecisionCacheSize: cacheSize}, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := toolCall("human", []any{"editor"}, []string{"openid", "docs:read", "docs:write"}, "updateDocument")
	in.PreparedPrincipal = PreparePrincipal(in.Principal)
	in.PreparedServer = PrepareServer(in.Server)
	ctx := context.Background()
	if d, err := e.Evaluate(ctx, in); err != nil || !d.Allow {
		b.Fatalf("decision %+v, err %v", d, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateBundles: every shipped bundle through the server's hot
// path (prepared principal and server), "rego" evaluating every time and
// "memoized" with the decision cache. Compare the two within one run.
func BenchmarkEvaluateBundles(b *testing.B) {
	for _, name := range shippedBundles {
		for _, bc := range []struct {
			name string
			size int
		}{{"rego", -1}, {"memoized", 0}} {
			b.Run(name+"/"+bc.name, func(b *testing.B) {
				e, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: "../bundles/" + name}}, DecisionCacheSize: bc.size}, nil)
				if err != nil {
					b.Fatal(err)
				}
				in := toolCall("human", []any{"editor"}, []string{"openid", "docs:read", "docs:write"}, "readDocument")
				in.MCP.Arguments = []byte(`{"id":"doc-1"}`)
				in.Principal.Scopes = []string{"docs:read"}
				in.PreparedPrincipal = PreparePrincipal(in.Principal)
				in.PreparedServer = PrepareServer(in.Server)
				ctx := context.Background()
				if d, err := e.Evaluate(ctx, in); err != nil || !d.Allow {
					b.Fatalf("decision %+v, err %v", d, err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.Evaluate(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
