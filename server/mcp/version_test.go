package mcp

import (
	"errors"
	"testing"
)

func TestVersionHandling(t *testing.T) {
	const initialize = `{"jsonrpc":"2.0","id":"i-1","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`
	t.Run("refusal echoes id and names supported and requested", func(t *testing.T) {
		_, err := Parse(post("2099-01-01", toolCall))
		var me *Error
		if !errors.As(err, &me) || string(me.ID) != "7" || me.Data["requested"] != "2099-01-01" {
			t.Fatalf("got %+v", me)
		}
		if sup, _ := me.Data["supported"].([]string); len(sup) != len(SupportedVersions) {
			t.Fatalf("supported = %v", me.Data["supported"])
		}
	})
	t.Run("initialize judged by its body version", func(t *testing.T) {
		c, err := Parse(post("", initialize))
		if err != nil || c.Version != Version20251125 {
			t.Fatalf("version %v err %v", c, err)
		}
	})
	t.Run("initialize with an unknown body version is negotiation", func(t *testing.T) {
		c, err := Parse(post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2099-01-01"}}`))
		if err != nil || c.Version != DefaultVersion || c.RequestedVersion != "2099-01-01" {
			t.Fatalf("got %+v err %v", c, err)
		}
	})
	t.Run("per-server allow-list", func(t *testing.T) {
		in := post(Version20250326, toolCall)
		in.Versions = []string{Version20250618, Version20251125}
		_, err := Parse(in)
		var me *Error
		if !errors.As(err, &me) || me.Code != CodeUnsupportedVersion {
			t.Fatalf("version outside the allow-list: %v", err)
		}
		in.ProtocolVersion = Version20251125
		if _, err := Parse(in); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("newer versions only with the named relaxation", func(t *testing.T) {
		in := post("2027-03-01", toolCall)
		if _, err := Parse(in); err == nil {
			t.Fatal("newer version accepted without allow_newer")
		}
		in.AllowNewer = true
		c, err := Parse(in)
		if err != nil || c.Version != Version20260728 || c.RequestedVersion != "2027-03-01" {
			// 2026-07-28 rules need Mcp-Method: a plain body is refused there.
			var me *Error
			if !errors.As(err, &me) || me.Code != CodeHeaderMismatch {
				t.Fatalf("got %+v err %v", c, err)
			}
		}
		in.ProtocolVersion = "2027-3-1"
		if _, err := Parse(in); err == nil {
			t.Fatal("malformed version accepted")
		}
		in.ProtocolVersion = "2020-01-01"
		if _, err := Parse(in); err == nil {
			t.Fatal("an older unknown version accepted as newer")
		}
	})
}

func TestProbeIDIgnoresMetaVersion(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}}`)
	if id := ProbeID("application/json", body); string(id) != "7" {
		t.Fatalf("ProbeID = %s", id)
	}
	in := post("2099-01-01", string(body))
	_, err := Parse(in)
	var me *Error
	if !errors.As(err, &me) || string(me.ID) != "7" {
		t.Fatalf("-32022 lost the id: %+v", me)
	}
}
