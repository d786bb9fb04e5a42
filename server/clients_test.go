package server

import (
	"encoding/json"
	"net/http"
	"testing"
)

// Version refusals echo the request id and say what is supported.
func TestCheckUnsupportedVersionAnswer(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read"})
	o := f.do(t, req{body: toolCall("readDocument"), headers: map[string]string{"authorization": "Bearer " + tok, "mcp-protocol-version": "2099-01-01"}})
	if o.status != http.StatusBadRequest {
		t.Fatalf("status %d", o.status)
	}
	var body struct {
		ID    json.RawMessage `json:"id"`
		Error struct {
			Code int `json:"code"`
			Data struct {
				Supported []string `json:"supported"`
				Requested string   `json:"requested"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(o.body), &body); err != nil {
		t.Fatal(err)
	}
	if string(body.ID) != "1" || body.Error.Code != -32022 || body.Error.Data.Requested != "2099-01-01" || len(body.Error.Data.Supported) == 0 {
		t.Fatalf("body %s", o.body)
	}
}

// A denial caused after the body parsed (here: a credential mode the
// server does not offer) echoes the request id.
func TestCheckCredentialDenialEchoesID(t *testing.T) {
	f := delegatedFixture(t, false)
	tok := f.token(t, map[string]any{"sub": "alice", "scope": "docs:read docs:write docs:admin"})
	o := f.do(t, req{body: toolCall("deleteDocument"), headers: bearer(tok)})
	var body struct {
		ID json.RawMessage `json:"id"`
	}
	if o.allowed || json.Unmarshal([]byte(o.body), &body) != nil || string(body.ID) != "1" {
		t.Fatalf("denial without the request id: %d %s", o.status, o.body)
	}
}
