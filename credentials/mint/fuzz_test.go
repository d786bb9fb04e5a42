package mint

import (
	"context"
	"strings"
	"testing"
)

// FuzzMint checks that Mint either refuses claims (with a mint: error that
// does not echo them) or mints a token that verifies and round-trips them.
func FuzzMint(f *testing.F) {
	f.Add("alice", "https://docs.example/mcp", "agent-1", "docs:read docs:write", "agent-1", "org")
	f.Add("", "aud", "c", "", "", "")
	f.Add("al\x00ice", "aud", "c", "", "", "")
	f.Add("ünïcode ✓", "urn:x", "c", "a\"b", "", "iss")
	f.Add("\xff\xfe", "aud", "c", "", "", "")
	f.Add("bob", "aud", "c", "", "agent", "\xff")
	ti := build(f, Config{Algorithm: EdDSA})
	f.Fuzz(func(t *testing.T, sub, aud, clientID, scopes, actor, extraKey string) {
		c := Claims{Audience: aud, Subject: sub, ClientID: clientID}
		if scopes != "" {
			c.Scopes = strings.Split(scopes, " ")
		}
		if actor != "" {
			c.Actor = &Actor{Subject: actor, Act: &Actor{Subject: "root"}}
		}
		if extraKey != "" {
			c.Extra = map[string]any{extraKey: "v"}
		}
		tok, _, err := ti.Mint(context.Background(), c)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mint: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			for _, in := range []string{sub, aud, clientID, actor} {
				if len(in) >= 8 && strings.Contains(err.Error(), in) {
					t.Fatalf("error %q echoes input %q", err, in)
				}
			}
			return
		}
		_, claims, ok := verifyWith(t, ti.JWKS(), tok)
		if !ok {
			t.Fatal("minted token does not verify")
		}
		if claims["sub"] != sub || claims["aud"] != aud || claims["client_id"] != clientID {
			t.Fatalf("round trip: got sub %q aud %q client_id %q", claims["sub"], claims["aud"], claims["client_id"])
		}
		if actor != "" {
			act, _ := claims["act"].(map[string]any)
			if act["sub"] != actor {
				t.Fatalf("act.sub = %v, want %q", act["sub"], actor)
			}
		}
		if extraKey != "" && claims[extraKey] != "v" {
			t.Fatalf("extra %q = %v", extraKey, claims[extraKey])
		}
		if claims["iss"] != ti.URL() {
			t.Fatalf("iss = %v", claims["iss"])
		}
	})
}
