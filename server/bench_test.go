package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/credentials/mint"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// BenchmarkCheck measures the whole warm pipeline in-process: CheckRequest
// translation, MCP parse, cached token verification, session binding,
// policy decision, service-account credential, response building, metrics
// and the (asynchronous) decision log.
//
//   - rego: the decision cache is off, so the example RBAC bundle is
//     evaluated on every Check (policy's fast path: the decision rule's
//     leading branches natively, topdown otherwise). Target: <= 2.5x the
//     memoized Check and <= 100 allocs (BenchmarkCheckRatio measures the
//     ratio within one run).
//   - memoized: the default configuration; the RBAC policy is deterministic
//     and does not read input.request, so its decision for this principal
//     and tool is served from the decision cache.
func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cacheSize int
	}{{"rego", -1}, {"memoized", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixtureWith(b, func(c *config.Config) { c.Policy.DecisionCacheSize = bc.cacheSize })
			benchWarmCheck(b, f)
		})
	}
}

// benchWarmCheck measures Checks of an agent acting for a viewer calling
// readDocument, after warming every cache (token, prepared principal,
// decision, upstream credential).
func benchWarmCheck(b *testing.B, f *fixture) {
	b.Helper()
	tok := f.token(b, map[string]any{"sub": "vera", "roles": []string{"viewer"}, "scope": "docs:read",
		"act": map[string]any{"sub": "agent-bot"}})
	r := req{body: toolCall("readDocument"), headers: map[string]string{
		"authorization": "Bearer " + tok, "mcp-session-id": "bench-session",
		"accept": "application/json, text/event-stream", "user-agent": "bench",
	}}.check()
	ctx := context.Background()
	for range 3 { // warm caches (token, prepared principal, decision)
		if o := decode(b, mustCheck(b, f, ctx, r)); !o.allowed {
			b.Fatalf("warm-up Check denied: %d %s", o.status, o.body)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		resp, _ := f.svc.Check(ctx, r)
		if resp.GetOkResponse() == nil {
			b.Fatal("denied")
		}
	}
}

func mustCheck(b *testing.B, f *fixture, ctx context.Context, r *authv3.CheckRequest) *authv3.CheckResponse {
	b.Helper()
	resp, err := f.svc.Check(ctx, r)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}

// BenchmarkCheckCredential compares warm Checks that differ only in the
// upstream credential: the organization's service account versus a
// delegated token minted by the built-in issuer (served from the delegated
// token cache after the first Check). Target: delegated within 10% of
// service_account, measured in the same run.
func BenchmarkCheckCredential(b *testing.B) {
	for _, mode := range []string{"service_account", "delegated"} {
		b.Run(mode, func(b *testing.B) {
			f := newFixtureWith(b, func(c *config.Config) {
				c.Issuer = &mint.Config{Issuer: "http://127.0.0.1:1/mcpauthz"}
				if mode == "delegated" {
					c.Servers[0].Credential = outbound.Config{Mode: outbound.ModeDelegated, Delegated: &outbound.DelegatedConfig{
						Issuer: outbound.IssuerBuiltin, Scopes: []string{"docs:read", "docs:write"}, DefaultScopes: []string{"docs:read"}}}
				}
			})
			benchWarmCheck(b, f)
		})
	}
}

// BenchmarkDelegatedColdStampede: per iteration, 1000 concurrent Checks for
// one user and tool arrive with a cold delegated-token cache (a new caller
// token each iteration). It reports issuances per stampede, which must be 1.
func BenchmarkDelegatedColdStampede(b *testing.B) {
	f := newFixtureWith(b, func(c *config.Config) {
		c.Issuer = &mint.Config{Issuer: "http://127.0.0.1:1/mcpauthz"}
		c.Servers[0].Credential = outbound.Config{Mode: outbound.ModeDelegated, Delegated: &outbound.DelegatedConfig{
			Issuer: outbound.IssuerBuiltin, Scopes: []string{"docs:read"}}}
	})
	ctx := context.Background()
	var distinct int
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		tok := f.token(b, map[string]any{"sub": fmt.Sprintf("user-%d", i), "roles": []string{"viewer"}, "scope": "docs:read"})
		r := req{body: toolCall("readDocument"), headers: bearer(tok)}.check()
		b.StartTimer()
		var wg sync.WaitGroup
		auths := make([]string, 1000)
		for j := range auths {
			wg.Go(func() {
				resp, _ := f.svc.Check(ctx, r)
				for _, h := range resp.GetOkResponse().GetHeaders() {
					if h.GetHeader().GetKey() == "authorization" {
						auths[j] = h.GetHeader().GetValue()
					}
				}
			})
		}
		wg.Wait()
		slices.Sort(auths)
		if auths[0] == "" {
			b.Fatal("a Check got no delegated token")
		}
		distinct += len(slices.Compact(auths))
	}
	b.ReportMetric(float64(distinct)/float64(b.N), "issuances/stampede")
	if distinct != b.N {
		b.Fatalf("%d stampedes minted %d distinct tokens, want one each", b.N, distinct)
	}
}
