package mcp

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func sp(s string) *string { return &s }

const toolCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris","days":3}}}`

func post(ver, body string) Input {
	return Input{HTTPMethod: "POST", ContentType: "application/json", ProtocolVersion: ver, Body: []byte(body)}
}

// post26 builds a 2026-07-28 POST with the given mirror headers.
func post26(body string, method, name *string) Input {
	in := post(Version20260728, body)
	in.HeaderMethod, in.HeaderName = method, name
	return in
}

func b64(s string) *string {
	v := "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
	return &v
}

func b64raw(s string) *string {
	v := "=?base64?" + base64.RawStdEncoding.EncodeToString([]byte(s)) + "?="
	return &v
}

func TestParseRefusals(t *testing.T) {
	long := strings.Repeat("a", 129)
	deep := strings.Repeat("[", 70) + strings.Repeat("]", 70)
	tests := []struct {
		name   string
		in     Input
		status int
		code   int
		reason string
		id     string
	}{
		// JSON-level traps.
		{"duplicate key top", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`), 400, -32700, "duplicate_key", ""},
		{"duplicate name in params", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"rm_rf"}}`), 400, -32700, "duplicate_key", ""},
		{"duplicate via escape", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","n\u0061me":"rm_rf"}}`), 400, -32700, "duplicate_key", ""},
		{"Method vs method", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}`), 400, -32700, "case_variant_key", ""},
		{"Method alone", post("", `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`), 400, -32700, "case_variant_key", ""},
		{"Arguments alone", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Arguments":{"x":1}}}`), 400, -32700, "case_variant_key", ""},
		{"unicode fold argumentſ", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","argumentſ":{"x":1}}}`), 400, -32700, "case_variant_key", ""},
		{"kelvin sign variant siblings", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{},"x":{"k":1,"K":2}}}`), 400, -32700, "case_variant_key", ""},
		{"nested duplicate in arguments", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"o":{"p":[{"q":1,"q":2}]}}}}`), 400, -32700, "duplicate_key", ""},
		{"nested case variant in arguments", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"path":"/tmp","PATH":"/etc"}}}`), 400, -32700, "case_variant_key", ""},
		{"method is number", post("", `{"jsonrpc":"2.0","id":1,"method":5}`), 400, -32600, "invalid_method", "1"},
		{"method empty", post("", `{"jsonrpc":"2.0","id":1,"method":""}`), 400, -32600, "invalid_method", "1"},
		{"trailing object", post("", toolCall+`{}`), 400, -32700, "trailing_data", ""},
		{"trailing garbage after ws", post("", toolCall+" \n x"), 400, -32700, "trailing_data", ""},
		{"invalid utf8 in string", post("", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\",\"arguments\":{\"x\":\"\xff\xfe\"}}}"), 400, -32700, "invalid_utf8", ""},
		{"utf8 encoded surrogate", post("", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xed\xa0\x80\"}}"), 400, -32700, "invalid_utf8", ""},
		{"overlong utf8", post("", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xc0\xaf\"}}"), 400, -32700, "invalid_utf8", ""},
		{"invalid utf8 outside string", post("", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"\xff}"), 400, -32700, "invalid_utf8", ""},
		{"lone high surrogate", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\ud800"}}`), 400, -32700, "lone_surrogate", ""},
		{"lone low surrogate", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\udc00abc"}}`), 400, -32700, "lone_surrogate", ""},
		{"high then non-low", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\ud800\u0041"}}`), 400, -32700, "lone_surrogate", ""},
		{"invalid escape", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\q"}}`), 400, -32700, "invalid_escape", ""},
		{"short unicode escape", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\u12"}}`), 400, -32700, "invalid_escape", ""},
		{"control char", post("", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"a\tb\"}}"), 400, -32700, "control_character", ""},
		{"too deep", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":`+deep+`}}`), 400, -32700, "too_deep", ""},
		{"leading zero", post("", `{"jsonrpc":"2.0","id":01,"method":"ping"}`), 400, -32700, "syntax_error", ""},
		{"bare minus", post("", `{"jsonrpc":"2.0","id":-,"method":"ping"}`), 400, -32700, "invalid_number", ""},
		{"dot no digits", post("", `{"jsonrpc":"2.0","id":1.,"method":"ping"}`), 400, -32700, "invalid_number", ""},
		{"exp no digits", post("", `{"jsonrpc":"2.0","id":1e,"method":"ping"}`), 400, -32700, "invalid_number", ""},
		{"plus sign", post("", `{"jsonrpc":"2.0","id":+1,"method":"ping"}`), 400, -32700, "syntax_error", ""},
		{"NaN", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}`), 400, -32700, "syntax_error", ""},
		{"bom", post("", "\xef\xbb\xbf"+toolCall), 400, -32700, "leading_bom", ""},
		{"trailing comma", post("", `{"jsonrpc":"2.0","id":1,"method":"ping",}`), 400, -32700, "syntax_error", ""},
		{"single quotes", post("", `{'jsonrpc':"2.0"}`), 400, -32700, "syntax_error", ""},
		{"truncated", post("", `{"jsonrpc":"2.0","id":1,"method":"pi`), 400, -32700, "unexpected_eof", ""},
		{"empty body", post("", ``), 400, -32700, "empty_body", ""},
		{"whitespace body", post("", " \n"), 400, -32700, "empty_body", ""},
		{"top-level string", post("", `"tools/call"`), 400, -32600, "invalid_request", ""},
		// JSON-RPC shape.
		{"jsonrpc 2.0 with space", post("", `{"jsonrpc":"2.0 ","id":1,"method":"ping"}`), 400, -32600, "bad_jsonrpc_version", "1"},
		{"jsonrpc number", post("", `{"jsonrpc":2.0,"id":1,"method":"ping"}`), 400, -32600, "bad_jsonrpc_version", "1"},
		{"jsonrpc missing", post("", `{"id":"a","method":"ping"}`), 400, -32600, "bad_jsonrpc_version", `"a"`},
		{"id float", post("", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`), 400, -32600, "invalid_id", ""},
		{"id object", post("", `{"jsonrpc":"2.0","id":{},"method":"ping"}`), 400, -32600, "invalid_id", ""},
		{"id bool", post("", `{"jsonrpc":"2.0","id":true,"method":"ping"}`), 400, -32600, "invalid_id", ""},
		{"request null id", post("", `{"jsonrpc":"2.0","id":null,"method":"ping"}`), 400, -32600, "invalid_id", ""},
		{"request with result", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`), 400, -32600, "invalid_request", "1"},
		{"neither method nor id", post("", `{"jsonrpc":"2.0","result":{}}`), 400, -32600, "invalid_request", ""},
		{"response both", post("", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}`), 400, -32600, "invalid_response", "1"},
		{"response neither", post("", `{"jsonrpc":"2.0","id":1}`), 400, -32600, "invalid_response", "1"},
		{"response null id with result", post("", `{"jsonrpc":"2.0","id":null,"result":{}}`), 400, -32600, "invalid_id", ""},
		{"params array", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[]}`), 400, -32602, "invalid_params", "1"},
		{"params null", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}`), 400, -32602, "invalid_params", "1"},
		// MCP params.
		{"tools/call no params", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`), 400, -32602, "invalid_params", "1"},
		{"tools/call name number", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}`), 400, -32602, "invalid_name", "1"},
		{"tools/call name missing", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`), 400, -32602, "invalid_name", "1"},
		{"tool name with space", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get weather"}}`), 400, -32602, "invalid_tool_name", "1"},
		{"tool name trailing space", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather "}}`), 400, -32602, "invalid_tool_name", "1"},
		{"tool name unicode", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gét_weather"}}`), 400, -32602, "invalid_tool_name", "1"},
		{"tool name escaped nul", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u0000"}}`), 400, -32602, "invalid_tool_name", "1"},
		{"tool name 129", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+long+`"}}`), 400, -32602, "invalid_tool_name", "1"},
		{"tool name empty", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`), 400, -32602, "invalid_tool_name", "1"},
		{"arguments array", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}`), 400, -32602, "invalid_arguments", "1"},
		{"arguments string", post("", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"a","arguments":"{}"}}`), 400, -32602, "invalid_arguments", "1"},
		{"prompts/get no name", post("", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}`), 400, -32602, "invalid_name", "1"},
		{"resources/read uri number", post("", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":1}}`), 400, -32602, "invalid_uri", "1"},
		{"resources/subscribe no params", post("", `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe"}`), 400, -32602, "invalid_params", "1"},
		{"completion no ref", post("", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"argument":{"name":"a","value":"b"}}}`), 400, -32602, "invalid_params", "1"},
		{"completion prompt with uri", post("", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p","uri":"file:///x"}}}`), 400, -32602, "invalid_params", "1"},
		{"completion Ref variant", post("", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p","Name":"q"}}}`), 400, -32700, "case_variant_key", ""},
		// Batches.
		{"empty batch", post("", `[]`), 400, -32600, "empty_batch", ""},
		{"batch 2025-06-18", post(Version20250618, `[`+toolCall+`]`), 400, -32600, "batch_not_allowed", ""},
		{"batch 2025-11-25", post(Version20251125, `[`+toolCall+`]`), 400, -32600, "batch_not_allowed", ""},
		{"batch 2026-07-28", post26(`[`+toolCall+`]`, sp("tools/call"), sp("get_weather")), 400, -32600, "batch_not_allowed", ""},
		{"batch element bad", post("", `[`+toolCall+`,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x y"}}]`), 400, -32602, "invalid_tool_name", "2"},
		{"batch element number", post("", `[`+toolCall+`,5]`), 400, -32600, "invalid_request", ""},
		{"batch trailing comma", post("", `[`+toolCall+`,]`), 400, -32700, "syntax_error", ""},
		{"batch mixed", post("", `[`+toolCall+`,{"jsonrpc":"2.0","id":3,"result":{}}]`), 400, -32600, "mixed_batch", ""},
		{"batch dup in later element", post("", `[`+toolCall+`,{"jsonrpc":"2.0","id":2,"id":3,"method":"ping"}]`), 400, -32700, "duplicate_key", ""},
		// Versions and HTTP.
		{"unknown version", post("2099-01-01", toolCall), 400, -32022, "unsupported_version", "7"},
		{"version with space", post("2025-06-18 ", toolCall), 400, -32022, "unsupported_version", "7"},
		{"legacy with other version", Input{HTTPMethod: "POST", ContentType: "application/json", ProtocolVersion: Version20250618, Legacy: true, Body: []byte(toolCall)}, 400, -32022, "unsupported_version", ""},
		{"GET 2026", Input{HTTPMethod: "GET", ProtocolVersion: Version20260728}, 405, -32000, "method_not_allowed", ""},
		{"DELETE 2026", Input{HTTPMethod: "DELETE", ProtocolVersion: Version20260728}, 405, -32000, "method_not_allowed", ""},
		{"PUT", Input{HTTPMethod: "PUT", ProtocolVersion: Version20250618, Body: []byte(toolCall)}, 405, -32000, "method_not_allowed", ""},
		{"lowercase post", Input{HTTPMethod: "post", ContentType: "application/json", Body: []byte(toolCall)}, 405, -32000, "method_not_allowed", ""},
		{"legacy GET", Input{HTTPMethod: "GET", Legacy: true}, 405, -32000, "method_not_allowed", ""},
		{"content type text", Input{HTTPMethod: "POST", ContentType: "text/plain", Body: []byte(toolCall)}, 415, -32000, "unsupported_content_type", ""},
		{"content type missing", Input{HTTPMethod: "POST", Body: []byte(toolCall)}, 415, -32000, "unsupported_content_type", ""},
		{"content type utf-16", Input{HTTPMethod: "POST", ContentType: "application/json; charset=utf-16", Body: []byte(toolCall)}, 415, -32000, "unsupported_content_type", ""},
		{"content type json-seq", Input{HTTPMethod: "POST", ContentType: "application/json-seq", Body: []byte(toolCall)}, 415, -32000, "unsupported_content_type", ""},
		{"content type bad param", Input{HTTPMethod: "POST", ContentType: "application/json; charset", Body: []byte(toolCall)}, 415, -32000, "unsupported_content_type", ""},
		// 2026-07-28 statelessness and headers.
		{"2026 response", post26(`{"jsonrpc":"2.0","id":1,"result":{}}`, nil, nil), 400, -32600, "response_not_allowed", "1"},
		{"2026 missing Mcp-Method", post26(toolCall, nil, sp("get_weather")), 400, -32020, "header_mismatch", "7"},
		{"2026 missing Mcp-Name", post26(toolCall, sp("tools/call"), nil), 400, -32020, "header_mismatch", "7"},
		{"2026 method mismatch", post26(toolCall, sp("tools/list"), sp("get_weather")), 400, -32020, "header_mismatch", "7"},
		{"2026 method case", post26(toolCall, sp("Tools/Call"), sp("get_weather")), 400, -32020, "header_mismatch", "7"},
		{"2026 name mismatch", post26(toolCall, sp("tools/call"), sp("delete_all")), 400, -32020, "header_mismatch", "7"},
		{"2026 name case", post26(toolCall, sp("tools/call"), sp("Get_Weather")), 400, -32020, "header_mismatch", "7"},
		{"2026 name b64 mismatch", post26(toolCall, sp("tools/call"), b64("delete_all")), 400, -32020, "header_mismatch", "7"},
		{"2026 method b64 mismatch", post26(toolCall, b64("tools/list"), sp("get_weather")), 400, -32020, "header_mismatch", "7"},
		{"2026 name bad b64", post26(toolCall, sp("tools/call"), sp("=?base64?!!!?=")), 400, -32020, "header_mismatch", "7"},
		{"2026 name literal sentinel-ish", post26(toolCall, sp("tools/call"), sp("=?BASE64?Z2V0X3dlYXRoZXI=?=")), 400, -32020, "header_mismatch", "7"},
		{"2026 uri mismatch", post26(`{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":"file:///a"}}`, sp("resources/read"), sp("file:///b")), 400, -32020, "header_mismatch", `"r"`},
		{"2026 name on nameless method", post26(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, sp("tools/list"), sp("x")), 400, -32020, "header_mismatch", "1"},
		{"2026 notification missing method header", post26(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, nil, nil), 400, -32020, "header_mismatch", ""},
		{"2026 meta version mismatch", post26(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-06-18"}}}`, sp("tools/list"), nil), 400, -32020, "header_mismatch", "1"},
		{"meta version claims 2026 without header", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`), 400, -32020, "header_mismatch", "1"},
		// Older versions: headers optional but must agree.
		{"2025-06-18 method mismatch", func() Input { in := post(Version20250618, toolCall); in.HeaderMethod = sp("tools/list"); return in }(), 400, -32020, "header_mismatch", "7"},
		{"2025-03-26 name mismatch b64", func() Input { in := post("", toolCall); in.HeaderName = b64("other"); return in }(), 400, -32020, "header_mismatch", "7"},
		{"2025-03-26 method header on response", func() Input {
			in := post("", `{"jsonrpc":"2.0","id":1,"result":{}}`)
			in.HeaderMethod = sp("tools/call")
			return in
		}(), 400, -32020, "header_mismatch", "1"},
		{"batch header disagrees with one element", func() Input {
			in := post("", `[`+toolCall+`,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_all"}}]`)
			in.HeaderMethod, in.HeaderName = sp("tools/call"), sp("get_weather")
			return in
		}(), 400, -32020, "header_mismatch", "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			call, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want %s", call, tc.reason)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if e.Status != tc.status || e.Code != tc.code || e.Reason != tc.reason {
				t.Fatalf("got status=%d code=%d reason=%q (%s), want %d %d %q", e.Status, e.Code, e.Reason, e.Msg, tc.status, tc.code, tc.reason)
			}
			if string(e.ID) != tc.id {
				t.Errorf("ID = %q, want %q", e.ID, tc.id)
			}
			if !strings.HasPrefix(err.Error(), "mcp: "+tc.reason+": ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	long := strings.Repeat("a", 128)
	type want struct {
		kind      Kind
		id        string
		method    string
		name      string
		uri       string
		arguments string
		params    string
	}
	tests := []struct {
		name    string
		in      Input
		version string
		tr      Transport
		batch   bool
		msgs    []want
	}{
		{"tools/call default version", post("", toolCall), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "7", "tools/call", "get_weather", "", `{"city":"Paris","days":3}`, `{"name":"get_weather","arguments":{"city":"Paris","days":3}}`}}},
		{"whitespace everywhere", post(Version20250618, " \r\n\t{ \"jsonrpc\" : \"2.0\" , \"id\" : \"abc\" , \"method\" : \"tools/call\" , \"params\" : { \"name\" : \"a.b-c_1\" } } \n"), "2025-06-18", TransportStreamable, false, []want{
			{KindRequest, `"abc"`, "tools/call", "a.b-c_1", "", "", `{ "name" : "a.b-c_1" }`}}},
		{"tool name 128 chars", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"`+long+`","arguments":{}}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "1", "tools/call", long, "", `{}`, `{"name":"` + long + `","arguments":{}}`}}},
		{"escaped name decodes", post("", `{"jsonrpc":"2.0","id":-3,"method":"tools\/call","params":{"name":"get\u005fweather"}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "-3", "tools/call", "get_weather", "", "", `{"name":"get\u005fweather"}`}}},
		{"surrogate pair and unicode ok", post("", `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"résumé \ud83d\ude00","arguments":{"k":"v\"","K2":"x"}}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "1", "prompts/get", "résumé 😀", "", `{"k":"v\"","K2":"x"}`, `{"name":"résumé \ud83d\ude00","arguments":{"k":"v\"","K2":"x"}}`}}},
		{"notification", post(Version20251125, `{"jsonrpc":"2.0","method":"notifications/initialized"}`), "2025-11-25", TransportStreamable, false, []want{
			{KindNotification, "", "notifications/initialized", "", "", "", ""}}},
		{"response 2025-11-25", post(Version20251125, `{"jsonrpc":"2.0","id":"s1","result":{"roots":[]}}`), "2025-11-25", TransportStreamable, false, []want{
			{KindResponse, `"s1"`, "", "", "", "", ""}}},
		{"error response null id", post(Version20250618, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`), "2025-06-18", TransportStreamable, false, []want{
			{KindResponse, "null", "", "", "", "", ""}}},
		{"resources/read", post("", `{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "2", "resources/read", "", "file:///etc/passwd", "", `{"uri":"file:///etc/passwd"}`}}},
		{"resources/unsubscribe", post("", `{"jsonrpc":"2.0","id":2,"method":"resources/unsubscribe","params":{"uri":"x:y"}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "2", "resources/unsubscribe", "", "x:y", "", `{"uri":"x:y"}`}}},
		{"completion prompt ref", post("", `{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"code_review"},"argument":{"name":"language","value":"py"}}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "2", "completion/complete", "code_review", "", "", `{"ref":{"type":"ref/prompt","name":"code_review"},"argument":{"name":"language","value":"py"}}`}}},
		{"completion resource ref", post("", `{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{path}"},"argument":{"name":"path","value":"a"}}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "2", "completion/complete", "", "file:///{path}", "", `{"ref":{"type":"ref/resource","uri":"file:///{path}"},"argument":{"name":"path","value":"a"}}`}}},
		{"name key in other method is not captured", post("", `{"jsonrpc":"2.0","id":1,"method":"custom/thing","params":{"name":5}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "1", "custom/thing", "", "", "", `{"name":5}`}}},
		{"batch hiding a forbidden call is fully parsed", post("", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_all","arguments":{"confirm":true}}},{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}]`), "2025-03-26", TransportStreamable, true, []want{
			{KindRequest, "1", "tools/list", "", "", "", ""},
			{KindRequest, "2", "tools/call", "delete_all", "", `{"confirm":true}`, `{"name":"delete_all","arguments":{"confirm":true}}`},
			{KindNotification, "", "notifications/progress", "", "", "", `{"progressToken":1,"progress":1}`}}},
		{"batch of responses", post("", `[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"m"}}]`), "2025-03-26", TransportStreamable, true, []want{
			{KindResponse, "1", "", "", "", "", ""}, {KindResponse, "2", "", "", "", "", ""}}},
		{"legacy batch", Input{HTTPMethod: "POST", ContentType: "application/json", Legacy: true, Body: []byte(`[` + toolCall + `]`)}, "2024-11-05", TransportLegacySSE, true, []want{
			{KindRequest, "7", "tools/call", "get_weather", "", `{"city":"Paris","days":3}`, `{"name":"get_weather","arguments":{"city":"Paris","days":3}}`}}},
		{"explicit 2024-11-05 batch", post(Version20241105, `[`+toolCall+`]`), "2024-11-05", TransportStreamable, true, []want{
			{KindRequest, "7", "tools/call", "get_weather", "", `{"city":"Paris","days":3}`, `{"name":"get_weather","arguments":{"city":"Paris","days":3}}`}}},
		{"content type with charset", Input{HTTPMethod: "POST", ContentType: `Application/JSON ; Charset="UTF-8"`, Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)}, "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "1", "ping", "", "", "", ""}}},
		{"2026 plain headers", post26(toolCall, sp("tools/call"), sp("get_weather")), "2026-07-28", TransportStreamable, false, []want{
			{KindRequest, "7", "tools/call", "get_weather", "", `{"city":"Paris","days":3}`, `{"name":"get_weather","arguments":{"city":"Paris","days":3}}`}}},
		{"2026 base64 headers", post26(toolCall, b64("tools/call"), b64("get_weather")), "2026-07-28", TransportStreamable, false, []want{
			{KindRequest, "7", "tools/call", "get_weather", "", `{"city":"Paris","days":3}`, `{"name":"get_weather","arguments":{"city":"Paris","days":3}}`}}},
		{"2026 base64 unpadded non-ascii prompt", post26(`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"日本語"}}`, sp("prompts/get"), b64raw("日本語")), "2026-07-28", TransportStreamable, false, []want{
			{KindRequest, "1", "prompts/get", "日本語", "", "", `{"name":"日本語"}`}}},
		{"2026 resource uri header", post26(`{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a b"}}`, sp("resources/subscribe"), b64("file:///a b")), "2026-07-28", TransportStreamable, false, []want{
			{KindRequest, "1", "resources/subscribe", "", "file:///a b", "", `{"uri":"file:///a b"}`}}},
		{"2026 tools/list no name header", post26(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, sp("tools/list"), nil), "2026-07-28", TransportStreamable, false, []want{
			{KindRequest, "1", "tools/list", "", "", "", `{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`}}},
		{"2026 notification", post26(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, sp("notifications/cancelled"), nil), "2026-07-28", TransportStreamable, false, []want{
			{KindNotification, "", "notifications/cancelled", "", "", "", `{"requestId":1}`}}},
		{"2025-06-18 matching headers", func() Input {
			in := post(Version20250618, toolCall)
			in.HeaderMethod, in.HeaderName = sp("tools/call"), b64("get_weather")
			return in
		}(), "2025-06-18", TransportStreamable, false, []want{
			{KindRequest, "7", "tools/call", "get_weather", "", `{"city":"Paris","days":3}`, `{"name":"get_weather","arguments":{"city":"Paris","days":3}}`}}},
		{"GET 2025-03-26", Input{HTTPMethod: "GET"}, "2025-03-26", TransportStreamable, false, nil},
		{"DELETE 2025-11-25", Input{HTTPMethod: "DELETE", ProtocolVersion: Version20251125}, "2025-11-25", TransportStreamable, false, nil},
		{"large object with distinct keys", post("", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{`+manyKeys(100, "")+`}}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "1", "tools/call", "a", "", `{` + manyKeys(100, "") + `}`, `{"name":"a","arguments":{` + manyKeys(100, "") + `}}`}}},
		{"depth 64 ok", post("", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":`+strings.Repeat("[", 62)+strings.Repeat("]", 62)+`}}`), "2025-03-26", TransportStreamable, false, []want{
			{KindRequest, "1", "ping", "", "", "", `{"x":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}`}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			call, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if call.Version != tc.version || call.Transport != tc.tr || call.Batch != tc.batch {
				t.Fatalf("call = {%s %v %v}, want {%s %v %v}", call.Version, call.Transport, call.Batch, tc.version, tc.tr, tc.batch)
			}
			if len(call.Messages) != len(tc.msgs) {
				t.Fatalf("%d messages, want %d", len(call.Messages), len(tc.msgs))
			}
			for i, w := range tc.msgs {
				m := call.Messages[i]
				got := want{m.Kind, string(m.ID), m.Method, m.Name, m.URI, string(m.Arguments), string(m.Params)}
				if got != w {
					t.Errorf("message %d:\n got %+v\nwant %+v", i, got, w)
				}
				if w.kind == KindNotification && m.ID != nil {
					t.Errorf("notification ID = %q, want nil", m.ID)
				}
				if w.arguments == "" && m.Arguments != nil || w.params == "" && m.Params != nil {
					t.Errorf("absent raw fields must be nil")
				}
			}
		})
	}
}

func manyKeys(n int, extra string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k`)
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + i/26)))
		b.WriteString(`":1`)
	}
	b.WriteString(extra)
	return b.String()
}

func TestLargeObjectDuplicates(t *testing.T) {
	for _, tc := range []struct {
		extra, reason string
	}{
		{`,"kaa":2`, "duplicate_key"},    // duplicates key #0 after the linear window
		{`,"KAA":2`, "case_variant_key"}, // case variant of key #0
		{`,"\u006baa":2`, "duplicate_key"},
	} {
		t.Run(tc.reason+tc.extra, func(t *testing.T) {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{` + manyKeys(100, tc.extra) + `}}}`
			_, err := Parse(post("", body))
			var e *Error
			if !errors.As(err, &e) || e.Reason != tc.reason {
				t.Fatalf("err = %v, want %s", err, tc.reason)
			}
		})
	}
}

func TestValidToolName(t *testing.T) {
	tests := []struct {
		s  string
		ok bool
	}{
		{"a", true}, {"get_weather", true}, {"A.b-C_9", true}, {strings.Repeat("x", 128), true},
		{"", false}, {strings.Repeat("x", 129), false}, {"a b", false}, {"a/b", false}, {"é", false},
		{"a\x00", false}, {"tool:x", false}, {" a", false},
	}
	for _, tc := range tests {
		if got := ValidToolName(tc.s); got != tc.ok {
			t.Errorf("ValidToolName(%q) = %v, want %v", tc.s, got, tc.ok)
		}
	}
}

func TestDecodeHeader(t *testing.T) {
	tests := []struct {
		in, out string
		ok      bool
	}{
		{"tools/call", "tools/call", true},
		{"=?base64?dG9vbHMvY2FsbA==?=", "tools/call", true},
		{"=?base64?dG9vbHMvY2FsbA?=", "tools/call", true},
		{"=?base64??=", "", true},
		{"=?BASE64?dG9vbHMvY2FsbA==?=", "=?BASE64?dG9vbHMvY2FsbA==?=", true}, // markers are case-sensitive
		{"=?base64?dG9vbHMvY2FsbA==", "=?base64?dG9vbHMvY2FsbA==", true},     // no suffix: literal
		{"=?base64?dG9v!HMvY2FsbA==?=", "", false},
		{"=?base64?dG9v\nbHMvY2FsbA==?=", "", false},
		{"=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?=", true},
	}
	for _, tc := range tests {
		out, ok := decodeHeader(tc.in)
		if out != tc.out || ok != tc.ok {
			t.Errorf("decodeHeader(%q) = %q,%v want %q,%v", tc.in, out, ok, tc.out, tc.ok)
		}
	}
}

func TestStrings(t *testing.T) {
	if KindRequest.String() != "request" || KindNotification.String() != "notification" || KindResponse.String() != "response" {
		t.Error("Kind.String")
	}
	if TransportStreamable.String() != "streamable" || TransportLegacySSE.String() != "legacy_sse" {
		t.Error("Transport.String")
	}
	for _, v := range SupportedVersions {
		if _, ok := canonicalVersion(v); !ok {
			t.Errorf("SupportedVersions has %s that Parse refuses", v)
		}
	}
}

// TestErrorsDoNotEchoContent checks that refusals never quote the body or
// header values (which may carry secrets passed as tool arguments).
func TestErrorsDoNotEchoContent(t *testing.T) {
	secret := "sk_live_SECRET123"
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + secret + ` x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"` + secret + `","x":1,"x":2}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"k":"` + secret + "\xff" + `"}}}`,
	}
	for _, b := range bodies {
		in := post26(b, sp(secret), sp(secret))
		_, err := Parse(in)
		if err == nil {
			t.Fatalf("no error for %q", b)
		}
		e := err.(*Error)
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(e.Msg, "SECRET") {
			t.Errorf("error leaks content: %v", err)
		}
	}
}

var benchSink *Call

func BenchmarkParse(b *testing.B) {
	cases := []struct {
		name string
		in   Input
	}{
		{"tools_call", post("", toolCall)},
		{"tools_call_2026_b64", post26(toolCall, sp("tools/call"), b64("get_weather"))},
		{"batch3", post("", `[`+toolCall+`,`+toolCall[:len(toolCall)-len(`7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris","days":3}}}`)]+`8,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, err := Parse(c.in); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in.Body)))
			for b.Loop() {
				call, err := Parse(c.in)
				if err != nil {
					b.Fatal(err)
				}
				benchSink = call
			}
		})
	}
}
