package outbound

import (
	"context"
	"testing"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func BenchmarkServiceAccountWarm(b *testing.B) {
	b.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(b)
	p, err := New(context.Background(), ccConfig(ts, "OUTBOUND_TEST_CS"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, req := context.Background(), &Request{ServerID: "srv"}
	if _, err := p.Credential(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Credential(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := ts.hits.Load(); n != 1 {
		b.Fatalf("token endpoint hits = %d, want 1", n)
	}
}

func BenchmarkStatic(b *testing.B) {
	b.Setenv("OUTBOUND_TEST_KEY", "k")
	p, err := New(context.Background(), Config{Mode: ModeStatic, Static: &StaticConfig{Headers: []StaticHeader{
		{Name: "X-API-Key", Value: secret.Ref{Env: "OUTBOUND_TEST_KEY"}}}}}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, req := context.Background(), &Request{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Credential(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
