package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// fuzzVersions maps the fuzzer's version selector to a header value.
var fuzzVersions = []string{"", Version20241105, Version20250326, Version20250618, Version20251125, Version20260728, "bogus"}

func fuzzInput(body []byte, ver uint8, hm, hn string, flags uint8) Input {
	in := Input{
		HTTPMethod:      "POST",
		ContentType:     "application/json",
		ProtocolVersion: fuzzVersions[int(ver)%len(fuzzVersions)],
		Legacy:          flags&4 != 0,
		Body:            body,
	}
	if flags&1 != 0 {
		in.HeaderMethod = &hm
	}
	if flags&2 != 0 {
		in.HeaderName = &hn
	}
	if flags&8 != 0 {
		in.HTTPMethod = "GET"
	}
	return in
}

// refMessage is what encoding/json sees in a message.
type refMessage struct {
	Method *string          `json:"method"`
	ID     json.RawMessage  `json:"id"`
	Params *json.RawMessage `json:"params"`
}

type refParams struct {
	Name      *string         `json:"name"`
	URI       *string         `json:"uri"`
	Arguments json.RawMessage `json:"arguments"`
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(toolCall), uint8(0), "", "", uint8(0))
	f.Add([]byte(toolCall), uint8(5), "tools/call", "=?base64?Z2V0X3dlYXRoZXI=?=", uint8(3))
	f.Add([]byte(`[`+toolCall+`,{"jsonrpc":"2.0","method":"notifications/initialized"}]`), uint8(2), "", "", uint8(0))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}`), uint8(3), "", "", uint8(0))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"x","result":{"a":"\ud83d\ude00"}}`), uint8(4), "", "", uint8(0))
	f.Fuzz(func(t *testing.T, body []byte, ver uint8, hm, hn string, flags uint8) {
		in := fuzzInput(body, ver, hm, hn, flags)
		call, err := Parse(in)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.Status < 400 || e.Status > 415 || e.Reason == "" || e.Code == 0 {
				t.Fatalf("bad error %+v", e)
			}
			if call != nil {
				t.Fatal("non-nil call with error")
			}
			return
		}
		if in.HTTPMethod == "GET" {
			if len(call.Messages) != 0 {
				t.Fatal("GET returned messages")
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("Parse accepted invalid JSON %q", body)
		}
		var elems []json.RawMessage
		if call.Batch {
			if err := json.Unmarshal(body, &elems); err != nil {
				t.Fatalf("batch: %v", err)
			}
		} else {
			elems = []json.RawMessage{bytes.TrimSpace(body)}
		}
		if len(elems) != len(call.Messages) || len(elems) == 0 {
			t.Fatalf("%d messages, encoding/json sees %d", len(call.Messages), len(elems))
		}
		for i, raw := range elems {
			m := call.Messages[i]
			var ref refMessage
			if err := json.Unmarshal(raw, &ref); err != nil {
				t.Fatalf("message %d: encoding/json: %v", i, err)
			}
			refMethod := ""
			if ref.Method != nil {
				refMethod = *ref.Method
			}
			if refMethod != m.Method {
				t.Fatalf("message %d: method %q, encoding/json sees %q", i, m.Method, refMethod)
			}
			if (m.Kind == KindNotification) != (m.ID == nil) {
				t.Fatalf("message %d: kind %v with id %q", i, m.Kind, m.ID)
			}
			if m.ID != nil && !bytes.Equal(m.ID, ref.ID) {
				t.Fatalf("message %d: id %q, encoding/json sees %q", i, m.ID, ref.ID)
			}
			switch m.Method {
			case "tools/call", "prompts/get", "resources/read", "resources/subscribe", "resources/unsubscribe":
				var p refParams
				if ref.Params == nil || json.Unmarshal(*ref.Params, &p) != nil {
					t.Fatalf("message %d: encoding/json cannot read params", i)
				}
				if m.Method == "tools/call" || m.Method == "prompts/get" {
					if p.Name == nil || *p.Name != m.Name {
						t.Fatalf("message %d: name %q, encoding/json sees %v", i, m.Name, p.Name)
					}
					if !bytes.Equal(p.Arguments, m.Arguments) {
						t.Fatalf("message %d: arguments differ", i)
					}
				} else if p.URI == nil || *p.URI != m.URI {
					t.Fatalf("message %d: uri %q, encoding/json sees %v", i, m.URI, p.URI)
				}
			}
		}
	})
}
