package policy

import (
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestPreparedMatchesDirect: the prepared principal and server convert to
// exactly the value the direct conversion produces.
func TestPreparedMatchesDirect(t *testing.T) {
	in := toolCall("agent_for_user", []any{"viewer"}, []string{"docs:read"}, "readDocument")
	in.Principal.Actor = &Actor{Subject: "bot", ClientID: "bot-client", Issuer: "https://idp"}
	in.Principal.Chain = []Actor{{Subject: "orchestrator"}}
	direct, err := in.toValue(allInput)
	if err != nil {
		t.Fatal(err)
	}
	pin := *in
	pin.PreparedPrincipal = PreparePrincipal(in.Principal)
	pin.PreparedServer = PrepareServer(in.Server)
	pin.Principal, pin.Server = Principal{}, Server{} // prepared values must win
	prepared, err := pin.toValue(allInput)
	if err != nil {
		t.Fatal(err)
	}
	if direct.Compare(prepared) != 0 {
		t.Fatalf("prepared input differs:\n direct   %v\n prepared %v", direct, prepared)
	}
	if got := pin.PreparedPrincipal.Principal().Subject; got != in.Principal.Subject {
		t.Errorf("Principal() = %q", got)
	}
	if got := pin.PreparedServer.Server().ID; got != "docs" {
		t.Errorf("Server() = %q", got)
	}
}

// TestLazyHeaders: RawHeaders are filtered through KeepHeader, and only
// when the policy reads headers at all.
func TestLazyHeaders(t *testing.T) {
	in := toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument")
	in.Request.Headers = nil
	in.Request.RawHeaders = map[string]string{"authorization": "Bearer secret", "user-agent": "ua"}
	in.Request.KeepHeader = func(k string) bool { return k != "authorization" }
	v, err := in.toValue(allInput)
	if err != nil {
		t.Fatal(err)
	}
	got := v.(ast.Object).Get(ast.StringTerm("request")).Value.(ast.Object).Get(ast.StringTerm("headers")).String()
	if got != `{"user-agent": "ua"}` {
		t.Fatalf("headers = %s", got)
	}
	v, err = in.toValue(inputUse{request: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := v.(ast.Object).Get(ast.StringTerm("request")).Value.(ast.Object).Get(ast.StringTerm("headers")); h.String() != "null" {
		t.Fatalf("unused headers converted: %v", h)
	}
}

// TestClaimsValueMatchesInterfaceToValue: the reflection-free claims
// conversion gives exactly what ast.InterfaceToValue gives.
func TestClaimsValueMatchesInterfaceToValue(t *testing.T) {
	for i, claims := range []any{
		map[string]any{"sub": "a", "roles": []any{"viewer", float64(7), nil, true}, "exp": json.Number("1750000000"),
			"act": map[string]any{"sub": "bot", "act": map[string]any{"sub": "x"}}, "n": float64(1.5), "i": 3, "i64": int64(-4),
			"s": []string{"a", "b"}, "m": map[string]string{"k": "v"}, "empty": map[string]any{}, "nil": nil, "u": uint8(2)},
		map[string]any{},
		[]any{map[string]any{"a": []any{}}},
	} {
		want, err := ast.InterfaceToValue(claims)
		if err != nil {
			t.Fatal(err)
		}
		got, err := claimsValue(claims)
		if err != nil {
			t.Fatal(err)
		}
		if want.Compare(got) != 0 {
			t.Fatalf("case %d: claimsValue %v, InterfaceToValue %v", i, got, want)
		}
	}
}
