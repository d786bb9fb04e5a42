package server

import (
	"net/url"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// FuzzSessionID: no input binds a session id that an upstream would read
// differently. The header is what Envoy hands over (repeated lines joined
// with ","); the upstream SDKs read the first line. The legacy id is what
// Go's net/url (and the other SDKs, which decode the same way) returns for
// any of the configured names.
func FuzzSessionID(f *testing.F) {
	f.Add("sess-1", "", false)
	f.Add("a,b", "", true)
	f.Add("", "sessionId=leg-1", false)
	f.Add("", "sessionid=a&session_id=b", false)
	f.Add("", "session%49d=x%2Dy", false)
	f.Add("", "sessionId=a+b&x=1", false)
	f.Add("x", "SessionId=y", true)
	f.Add("", "a=1;sessionId=2", false)
	names := []string{"sessionId", "sessionid", "session_id"}
	s := &Service{sessionParams: names}
	f.Fuzz(func(t *testing.T, header, query string, hasHeader bool) {
		h := map[string]string{}
		if hasHeader {
			h["mcp-session-id"] = header
		}
		sid, legacy, d := s.sessionID(&envoy.Request{Headers: h, Query: query})
		if d != nil {
			return
		}
		if sid != "" && !validSessionID(sid) {
			t.Fatalf("bound an invalid id %q", sid)
		}
		if hasHeader && legacy {
			t.Fatalf("header and query both present, yet accepted")
		}
		if hasHeader {
			first, _, _ := strings.Cut(header, ",")
			if first != header || strings.TrimSpace(first) != sid {
				t.Fatalf("header %q: bound %q, the upstream reads %q", header, sid, first)
			}
			return
		}
		vals, _ := url.ParseQuery(query)
		for k, v := range vals {
			if !isSessionParam(k, names) {
				continue
			}
			if len(v) != 1 || v[0] != sid || !legacy {
				t.Fatalf("query %q: bound %q (legacy=%v), the upstream reads %s=%q", query, sid, legacy, k, v)
			}
		}
		if legacy && sid == "" {
			t.Fatalf("legacy with an empty id")
		}
	})
}
