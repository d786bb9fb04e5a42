package outbound

import (
	"errors"
	"testing"
)

// FuzzActorToken: whatever a caller puts in the actor-token header, the
// provider never panics, and it only passes on a token that names the
// verified actor.
func FuzzActorToken(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIn0.sig", "agent-1")
	f.Add("bearer x", "agent-1")
	f.Add("a b", "")
	f.Add("", "agent-1")
	f.Add("Bearer ..", "")
	a := actorTokenSource{header: DefaultActorTokenHeader}
	f.Fuzz(func(t *testing.T, header, actor string) {
		req := &Request{Kind: "agent_for_user", Actor: actor, Headers: map[string]string{DefaultActorTokenHeader: header}}
		tok, err := a.token(req)
		if err != nil {
			var oe *Error
			if !errors.As(err, &oe) || (oe.Reason != ReasonActorMismatch && oe.Reason != ReasonNoActorToken) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if sub := unverifiedSubject(tok); sub == "" || sub != actor {
			t.Fatalf("accepted actor token naming %q for actor %q", sub, actor)
		}
	})
}
