package server

import (
	"context"
	"strconv"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
)

// TestColdTokenStampedeVerifiesOnce: 1,000 concurrent Checks carrying one
// token never seen before verify its signature once (issue 12: the
// verifier shares one verification between concurrent misses, and the
// asynchronous cache Set is bridged), every Check is allowed, and every
// upstream request carries the service-account credential, never the
// caller's token.
func TestColdTokenStampedeVerifiesOnce(t *testing.T) {
	f := newFixture(t)
	v, ok := f.svc.verifier.(*identity.Verifier)
	if !ok {
		t.Fatalf("verifier is %T", f.svc.verifier)
	}
	ctx := context.Background()
	for round := range 3 {
		tok := f.token(t, map[string]any{"sub": "stampede-" + strconv.Itoa(round), "roles": []string{"viewer"}, "scope": "docs:read"})
		r := req{body: toolCall("readDocument"), headers: bearer(tok)}.check()
		before := v.Metrics().Verifications
		var wg sync.WaitGroup
		resps := make([]*authv3.CheckResponse, 1000)
		for i := range resps {
			wg.Go(func() { resps[i], _ = f.svc.Check(ctx, r) })
		}
		wg.Wait()
		if got := v.Metrics().Verifications - before; got != 1 {
			t.Errorf("round %d: %d signature verifications for one new token, want 1", round, got)
		}
		for i, resp := range resps {
			o := decode(t, resp)
			if !o.allowed || o.set["authorization"] != "Bearer "+upstreamSecret {
				t.Fatalf("round %d Check %d: allowed=%v upstream authorization %q", round, i, o.allowed, o.set["authorization"])
			}
		}
	}
}
