package mcp

import "testing"

// BenchmarkParseEscaped parses a tools/call whose method, tool name, keys
// and values hold escapes, the path that decodes strings (jsonstr.Append).
func BenchmarkParseEscaped(b *testing.B) {
	in := post("", `{"jsonrpc":"2.0","id":7,"method":"tools\/call","params":{"n\u0061me":"get\u005fweather",`+
		`"arguments":{"c\u0069ty":"Par\u00eds \ud83d\ude00\n","note":"line1\nline2\t\"quoted\" caf\u00e9","days":3}}}`)
	call, err := Parse(in)
	if err != nil {
		b.Fatal(err)
	}
	if len(call.Messages) != 1 || call.Messages[0].Name != "get_weather" || call.Messages[0].Method != "tools/call" {
		b.Fatalf("decoded %+v", call.Messages)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in.Body)))
	for b.Loop() {
		call, err := Parse(in)
		if err != nil {
			b.Fatal(err)
		}
		benchSink = call
	}
}
