package connections

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

// TestLifecycleProperties drives one connection through random sequences of
// everything that can happen to it (connects that succeed, fail or are
// abandoned; expiry; background and lazy refresh; provider outages and
// provider-side revocation; upstream 401s; user revocation) and checks the
// invariants after every step:
//
//   - the stored status is one of the six, and no refresh lease is left;
//   - tokens are stored only for AUTHORIZED or ERROR (or PENDING started
//     from ERROR), never for REVOKED, EXPIRED or NEEDS_AUTHORIZATION;
//   - the generation never goes down and changes whenever the tokens do;
//   - the status_changed events form an unbroken chain ending at the
//     stored status;
//   - Token succeeds only for AUTHORIZED, and NeedsAuthorization never
//     carries AUTHORIZED.
func TestLifecycleProperties(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			e := newEnv(t, envOpts{provider: oauthtest.Options{RotateRefresh: seed%2 == 0}, cfg: Config{MaxFailures: 2}})
			r := rand.New(rand.NewPCG(seed, 42))
			var (
				lastGen    int64
				lastSealed []byte
				trail      []string
			)
			ops := []struct {
				name string
				run  func()
			}{
				{"connect", func() {
					q := e.authorize(e.m, alice, "alice").Query()
					_, _, _ = e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice)
				}},
				{"start only", func() { _, _ = e.m.StartConnect(ctx, alice, "", "") }},
				{"denied", func() {
					q := e.authorize(e.m, alice, "alice", oauthtest.Deny()).Query()
					_, _, _ = e.m.CompleteConnect(ctx, q.Get("state"), "", q.Get("iss"), q.Get("error"), alice)
				}},
				{"wrong user", func() {
					q := e.authorize(e.m, alice, "alice").Query()
					_, _, _ = e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", bob)
				}},
				{"expire+token", func() {
					if c, err := e.m.Get(ctx, alice); err == nil && !c.AccessExpiresAt.IsZero() {
						e.expire(alice)
					}
					e.tokenCheck(t)
				}},
				{"sweep", func() { e.clock.Advance(55 * time.Minute); e.m.sweep(ctx) }},
				{"revoke", func() { _ = e.m.Revoke(ctx, alice, Actor{Kind: "user", ID: alice.UserKey}, "") }},
				{"provider revokes", func() { e.p.RevokeUser("alice") }},
				{"outage", func() { e.p.SetFault(oauthtest.Fault5xx) }},
				{"recovery", func() { e.p.SetFault(oauthtest.FaultNone) }},
				{"upstream 401", func() { e.clock.Advance(upstreamGrace); _ = e.m.UpstreamRejected(ctx, alice) }},
				{"flow expires", func() { e.clock.Advance(DefaultFlowTTL + time.Second) }},
				{"token", func() { e.tokenCheck(t) }},
			}
			for step := range 60 {
				op := ops[r.IntN(len(ops))]
				trail = append(trail, op.name)
				op.run()
				e.clock.Advance(cacheTTL)
				where := fmt.Sprintf("step %d after %v", step, trail)
				rec, err := e.m.read(ctx, alice)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				md := rec.meta
				if !slices.Contains(stored, md.Status) || md.Lease != nil {
					t.Fatalf("%s: status %q lease %+v", where, md.Status, md.Lease)
				}
				hasTokens := len(rec.sealed) > 0
				switch md.Status {
				case StatusAuthorized, StatusError:
				case StatusPending:
					if hasTokens && md.Prev != StatusError && md.Prev != StatusAuthorized {
						t.Fatalf("%s: PENDING (from %s) holds tokens", where, md.Prev)
					}
				default:
					if hasTokens {
						t.Fatalf("%s: %s holds tokens", where, md.Status)
					}
				}
				if md.Generation < lastGen || (!bytes.Equal(rec.sealed, lastSealed) && md.Generation == lastGen && lastSealed != nil) {
					t.Fatalf("%s: generation %d (was %d) with tokens changed: %v", where, md.Generation, lastGen, !bytes.Equal(rec.sealed, lastSealed))
				}
				lastGen, lastSealed = md.Generation, slices.Clone(rec.sealed)
				e.checkChain(t, where, md.Status)
			}
		})
	}
}

// tokenCheck calls Token and checks it agrees with the stored status.
func (e *env) tokenCheck(t *testing.T) {
	t.Helper()
	tok, err := e.m.Token(ctx, alice)
	var na *NeedsAuthorizationError
	switch {
	case err == nil:
		if tok.Connection.Status != StatusAuthorized || tok.AccessToken == "" {
			t.Fatalf("Token succeeded with %+v", tok.Connection)
		}
	case errors.As(err, &na):
		if na.Connection.Status == StatusAuthorized {
			t.Fatalf("NeedsAuthorization with AUTHORIZED: %v", err)
		}
	case errors.Is(err, ErrUnavailable):
	default:
		t.Fatalf("Token = %v", err)
	}
}

// checkChain: alice's status_changed events link up and end at want.
func (e *env) checkChain(t *testing.T, where string, want Status) {
	t.Helper()
	e.evMu.Lock()
	defer e.evMu.Unlock()
	cur := StatusNeedsAuthorization
	for _, ev := range e.events {
		if ev.Type != EventStatusChanged || ev.Key != alice {
			continue
		}
		if ev.From != cur {
			t.Fatalf("%s: status_changed %s->%s (%s) but the previous one ended at %s", where, ev.From, ev.To, ev.Reason, cur)
		}
		cur = ev.To
	}
	if cur != want {
		t.Fatalf("%s: events end at %s, record is %s", where, cur, want)
	}
}
