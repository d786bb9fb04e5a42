package mint

import (
	"context"
	"testing"
)

// BenchmarkMint measures one access token: claims encoding plus the
// signature, which dominates (ES256 ≈ one P-256 scalar multiplication).
func BenchmarkMint(b *testing.B) {
	c := Claims{
		Audience: "https://docs.example/mcp", Subject: "alice", ClientID: "agent-1",
		Scopes: []string{"docs:read", "docs:write"},
		Actor:  &Actor{Subject: "agent-1", ClientID: "agent-1", Act: &Actor{Subject: "orchestrator"}},
		Extra:  map[string]any{"org": "acme"},
	}
	for _, alg := range []string{ES256, EdDSA, RS256} {
		b.Run(alg, func(b *testing.B) {
			i := build(b, Config{Algorithm: alg})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := i.Mint(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("ES256-parallel", func(b *testing.B) {
		i := build(b, Config{})
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := i.Mint(ctx, c); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkSign measures an attribution JWT (a signer is built per call).
func BenchmarkSign(b *testing.B) {
	i := build(b, Config{})
	ctx := context.Background()
	claims := map[string]any{"sub": "alice", "act": map[string]any{"sub": "agent-1"}, "tool": "search"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := i.Sign(ctx, "mcpauthz-attribution+jwt", claims); err != nil {
			b.Fatal(err)
		}
	}
}
