package connections

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestTransitions pins the whole lifecycle: every named transition from
// every status, allowed (and where to) or refused.
func TestTransitions(t *testing.T) {
	const (
		NA  = StatusNeedsAuthorization
		PEN = StatusPending
		AUT = StatusAuthorized
		EXP = StatusExpired
		REV = StatusRevoked
		ERR = StatusError
		no  = Status("illegal")
	)
	// want[transition] lists the result from NA, PENDING, AUTHORIZED,
	// EXPIRED, REVOKED, ERROR (prev for restore: REVOKED).
	want := map[Transition][6]Status{
		TConnectStarted:   {PEN, PEN, AUT, PEN, PEN, PEN},
		TConnectAbandoned: {no, REV, no, no, no, no},
		TConnectFailed:    {no, REV, AUT, no, no, no},
		TConnected:        {AUT, AUT, AUT, AUT, AUT, AUT},
		TRefreshed:        {no, no, AUT, no, no, AUT},
		TRefreshFailed:    {no, no, AUT, no, no, ERR},
		TRefreshGaveUp:    {no, no, ERR, no, no, no},
		TRefreshRevoked:   {no, no, REV, no, no, REV},
		TRefreshExpired:   {no, no, EXP, no, no, EXP},
		TAccessExpired:    {no, no, EXP, no, no, EXP},
		TUpstreamRejected: {no, no, REV, no, no, REV},
		TRevoked:          {REV, REV, REV, REV, REV, REV},
		TModeSwitch:       {REV, REV, REV, REV, REV, REV},
	}
	if len(want) != len(transitions) {
		t.Fatalf("table covers %d transitions, lifecycle has %d", len(want), len(transitions))
	}
	for tr, row := range want {
		for i, from := range stored {
			t.Run(fmt.Sprintf("%s from %s", tr, from), func(t *testing.T) {
				got, err := next(tr, from, StatusRevoked)
				if row[i] == no {
					var ite *IllegalTransitionError
					if !errors.As(err, &ite) || ite.Transition != tr || ite.From != from {
						t.Fatalf("next = %s, %v; want IllegalTransitionError", got, err)
					}
					if !strings.Contains(err.Error(), string(tr)) {
						t.Errorf("error %q does not name the transition", err)
					}
					return
				}
				if err != nil || got != row[i] {
					t.Fatalf("next = %s, %v; want %s", got, err, row[i])
				}
			})
		}
	}
}

func TestRestoreAfterFailedFlow(t *testing.T) {
	for prev, want := range map[Status]Status{
		"": StatusNeedsAuthorization, StatusNeedsAuthorization: StatusNeedsAuthorization,
		StatusExpired: StatusExpired, StatusRevoked: StatusRevoked, StatusError: StatusError,
		StatusPending: StatusNeedsAuthorization, StatusAuthorized: StatusNeedsAuthorization,
	} {
		for _, tr := range []Transition{TConnectAbandoned, TConnectFailed} {
			if got, err := next(tr, StatusPending, prev); err != nil || got != want {
				t.Errorf("%s from PENDING (prev %q) = %s %v, want %s", tr, prev, got, err, want)
			}
		}
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	cases := []string{"", "~", "%", "/", "a/b", "https://idp.example.com|alice", "ünïcode", "sp ace", "%7E", "~~", "\x00\x7f", "|||"}
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		cases = append(cases, string(b))
	}
	seen := map[string]string{}
	for _, s := range cases {
		e := escapePart(s)
		for i := 0; i < len(e); i++ {
			if e[i] < 0x21 || e[i] > 0x7e || e[i] == '/' {
				t.Fatalf("escapePart(%q) = %q: not visible ASCII without '/'", s, e)
			}
		}
		if other, ok := seen[e]; ok && other != s {
			t.Fatalf("%q and %q both escape to %q", s, other, e)
		}
		seen[e] = s
		back, err := unescapePart(e)
		if err != nil || back != s {
			t.Fatalf("unescapePart(escapePart(%q)) = %q, %v", s, back, err)
		}
	}
	k := Key{Org: "a/b", UserKey: "", Server: "s~1"}
	got, err := parseKey(k.recKey(), prefixRec)
	if err != nil || got != k {
		t.Fatalf("parseKey = %+v %v", got, err)
	}
}
