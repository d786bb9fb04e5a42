package extproc

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/policy"
)

// toolList is a tools/list response with n tools shaped like real ones
// (description and an input schema); every fifth is named delete*.
func toolList(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":12,"result":{"tools":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		name := fmt.Sprintf("readThing%d", i)
		if i%5 == 0 {
			name = fmt.Sprintf("deleteThing%d", i)
		}
		fmt.Fprintf(&b, `{"name":%q,"description":"Does thing %d with care; returns the thing.","inputSchema":{"type":"object","properties":{"id":{"type":"string","description":"the id"},"limit":{"type":"integer","minimum":1}},"required":["id"]},"annotations":{"readOnlyHint":true}}`, name, i)
	}
	b.WriteString(`],"nextCursor":"eyJwYWdlIjoyfQ=="}}`)
	return []byte(b.String())
}

// mapPolicy is a set lookup: the filtering cost alone.
type mapPolicy map[string]bool

func (m mapPolicy) decide(_ EntryKind, name string) (bool, error) { return m[name], nil }

func policyFor(n int) mapPolicy {
	m := mapPolicy{}
	for i := range n {
		m[fmt.Sprintf("readThing%d", i)] = true
	}
	return m
}

func BenchmarkFilterJSON(b *testing.B) {
	for _, n := range []int{200, 500, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in, d := toolList(n), policyFor(n).decide
			pick := func([]byte) decideFunc { return d }
			var f filterer
			out := make([]byte, 0, len(in))
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				o, st, err := f.filterMessage(in, pick, out)
				if err != nil || st.removed != (n+4)/5 {
					b.Fatalf("%v removed %d", err, st.removed)
				}
				out = o
			}
		})
	}
}

func BenchmarkFilterSSE(b *testing.B) {
	for _, n := range []int{200, 500, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ev := append(append([]byte("event: message\nid: 1\ndata: "), toolList(n)...), "\n\n"...)
			d := policyFor(n).decide
			pick := func([]byte) decideFunc { return d }
			var f filterer
			var scratch []byte
			s := &sseFilter{max: 1 << 24, onData: func(data []byte) ([]byte, bool, error) {
				o, st, err := f.filterMessage(data, pick, scratch)
				if err != nil {
					return nil, false, err
				}
				scratch = o
				return o, st.changedMessage, nil
			}}
			const chunk = 16 << 10 // Envoy hands over body data in slices of this order
			b.SetBytes(int64(len(ev)))
			b.ReportAllocs()
			for b.Loop() {
				for off := 0; off < len(ev); off += chunk {
					end := min(off+chunk, len(ev))
					if _, err := s.write(ev[off:end], end == len(ev)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkFilterJSONPolicy filters with the shipped rbac bundle through the
// engine's decision cache (prepared principal and server, as the lead's
// Evaluator would): the cost a warm tools/list pays per request.
func BenchmarkFilterJSONPolicy(b *testing.B) {
	e, err := policy.New(context.Background(), policy.Config{Bundles: []policy.BundleSource{{Path: "../../bundles/rbac"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	pp := policy.PreparePrincipal(policy.Principal{Authenticated: true, Kind: "human", Subject: "vera", Method: "jwt",
		Scopes: []string{"docs:read"}, Claims: map[string]any{"roles": []any{"viewer"}}})
	ps := policy.PrepareServer(policy.Server{ID: "docs"})
	ctx := context.Background()
	d := func(_ EntryKind, name string) (bool, error) {
		in := policy.Input{Version: policy.InputVersion, PreparedPrincipal: pp, PreparedServer: ps,
			MCP: policy.MCP{Kind: "request", Method: "tools/call", Tool: name, Transport: "streamable_http"}}
		dec, err := e.Evaluate(ctx, &in)
		return dec.Allow, err
	}
	pick := func([]byte) decideFunc { return d }
	for _, n := range []int{200, 500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			in := []byte(strings.ReplaceAll(string(toolList(n)), `"name":"readThing1"`, `"name":"readDocument"`))
			var f filterer
			out := make([]byte, 0, len(in))
			if _, _, err := f.filterMessage(in, pick, out); err != nil { // warm the decision cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				o, st, err := f.filterMessage(in, pick, out)
				if err != nil || st.kept != 1 {
					b.Fatalf("%v kept %d", err, st.kept)
				}
				out = o
			}
		})
	}
}

// BenchmarkJSONValidBaseline is encoding/json.Valid on the same 200-tool
// list: a yardstick for the machine the filter numbers come from.
func BenchmarkJSONValidBaseline(b *testing.B) {
	in := toolList(200)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(in) {
			b.Fatal("invalid")
		}
	}
}
