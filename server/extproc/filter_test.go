package extproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// allowExcept allows every entry whose name does not contain one of deny.
func allowExcept(deny ...string) decideFunc {
	return func(_ EntryKind, name string) (bool, error) {
		for _, d := range deny {
			if strings.Contains(name, d) {
				return false, nil
			}
		}
		return true, nil
	}
}

func pickAll(d decideFunc) func([]byte) decideFunc { return func([]byte) decideFunc { return d } }

func TestFilterMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // "" = unchanged
		removed int
	}{
		{"middle entry, nextCursor and unknown fields kept",
			`{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"readDocument","x":1},{"name":"deleteDocument","inputSchema":{"type":"object"}},{"name":"shareDocument"}],"nextCursor":"c2Vj\u00e9","_meta":{"k":[1,2]}},"extra":true}`,
			`{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"readDocument","x":1},{"name":"shareDocument"}],"nextCursor":"c2Vj\u00e9","_meta":{"k":[1,2]}},"extra":true}`, 1},
		{"first entry", `{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"deleteDocument"} , {"name":"a"} ]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"name":"a"} ]}}`, 1},
		{"last entry", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}, {"name":"deleteDocument"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}`, 1},
		{"every entry", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[\n  {\"name\":\"deleteDocument\"},\n  {\"name\":\"deleteAll\"}\n]}}",
			"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[\n  \n]}}", 2},
		{"pretty printed", "{\n \"jsonrpc\": \"2.0\",\n \"id\": \"x\",\n \"result\": {\n  \"tools\": [\n   {\"name\": \"a\"},\n   {\"name\": \"deleteDocument\"},\n   {\"name\": \"c\"}\n  ]\n }\n}",
			"{\n \"jsonrpc\": \"2.0\",\n \"id\": \"x\",\n \"result\": {\n  \"tools\": [\n   {\"name\": \"a\"},\n   {\"name\": \"c\"}\n  ]\n }\n}", 1},
		{"escaped name is decoded", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"\u0064eleteDocument"},{"name":"a"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}`, 1},
		{"nothing to drop", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"nextCursor":"n"}}`, "", 0},
		{"all four lists", `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"deleteP"},{"name":"p"}],"resources":[{"uri":"file:///deleteR"},{"uri":"file:///r"}],"resourceTemplates":[{"uriTemplate":"file:///delete/{x}"},{"uriTemplate":"file:///{y}"}],"tools":[]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p"}],"resources":[{"uri":"file:///r"}],"resourceTemplates":[{"uriTemplate":"file:///{y}"}],"tools":[]}}`, 3},
		{"entries that are not understood are dropped",
			`{"jsonrpc":"2.0","id":1,"result":{"tools":["a",{"nam":"b"},{"name":1},{"name":"c","name":"d"},{"Name":"e"},{"name":"f","NAME":"g"},{"name":""},{"name":"\ud800x"},{"name":"ok"}]}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}`, 8},
		{"error response", `{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"tools","data":{"tools":[{"name":"deleteDocument"}]}}}`, "", 0},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/x","params":{"tools":[{"name":"deleteDocument"}]}}`, "", 0},
		{"result not an object", `{"jsonrpc":"2.0","id":1,"result":[{"name":"deleteDocument"}]}`, "", 0},
		{"list not an array", `{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"deleteDocument"}}}`, "", 0},
		{"whitespace around", " \r\n\t{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"deleteDocument\"}]}}\n",
			" \r\n\t{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n", 1},
	}
	var f filterer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, st, err := f.filterMessage([]byte(tt.in), pickAll(allowExcept("delete")), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
				if st.changedMessage {
					t.Fatal("reported a change")
				}
			}
			if string(out) != want {
				t.Fatalf("got\n%s\nwant\n%s", out, want)
			}
			if st.removed != tt.removed {
				t.Errorf("removed %d, want %d", st.removed, tt.removed)
			}
			if !json.Valid(out) {
				t.Errorf("output is not valid JSON")
			}
			assertNoDenied(t, out, "delete")
		})
	}
}

func TestFilterMessageRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"batch", `[{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}]`, errBatch},
		{"duplicate result", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"deleteDocument"}]}}`, errAmbiguous},
		{"case-variant result", `{"jsonrpc":"2.0","id":1,"Result":{"tools":[{"name":"deleteDocument"}]}}`, errAmbiguous},
		{"escaped case-variant result", `{"jsonrpc":"2.0","id":1,"r\u0045sult":{"tools":[]}}`, errAmbiguous},
		{"duplicate tools", `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"deleteDocument"}]}}`, errAmbiguous},
		{"case-variant tools", `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"Tools":[{"name":"deleteDocument"}]}}`, errAmbiguous},
		{"kelvin sign folds", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"\u212aey\":1,\"tools\\u017f\":[]}}", nil},
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"x","result":{"tools":[{"name":"deleteDocument"}]}}`, errAmbiguous},
		{"result and error", `{"jsonrpc":"2.0","id":1,"error":{},"result":{"tools":[{"name":"deleteDocument"}]}}`, errAmbiguous},
		{"no result", `{"jsonrpc":"2.0","id":1}`, errNotMessage},
		{"not an object", `"tools"`, errNotMessage},
		{"empty", ` `, errNotMessage},
		{"trailing data", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}} {"x":1}`, errSyntax},
		{"NaN", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","n":NaN}]}}`, errSyntax},
		{"trailing comma", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},]}}`, errSyntax},
		{"invalid utf-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\xff\"}]}}", errSyntax},
		{"control character", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\x01\"}]}}", errSyntax},
		{"leading zero", `{"jsonrpc":"2.0","id":01,"result":{}}`, errSyntax},
		{"too deep", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}]}}`, errDepth},
		{"unterminated", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}`, errSyntax},
	}
	var f filterer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.filterMessage([]byte(tt.in), pickAll(allowExcept("delete")), nil)
			if tt.want == nil {
				// "tools\u017f" folds to "toolss", not "tools": no list, no error.
				if err != nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFilterMessageDecideSeesKindsAndErrors(t *testing.T) {
	var seen []string
	d := func(k EntryKind, n string) (bool, error) {
		seen = append(seen, string(k)+":"+n)
		if n == "boom" {
			return false, errors.New("policy down")
		}
		return true, nil
	}
	var f filterer
	var ids []string
	pick := func(id []byte) decideFunc { ids = append(ids, string(id)); return d }
	_, _, err := f.filterMessage([]byte(`{"jsonrpc":"2.0","id":"r1","result":{"tools":[{"name":"t"}],"prompts":[{"name":"p"}],"resources":[{"uri":"u"}],"resourceTemplates":[{"uriTemplate":"ut"}]}}`), pick, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "tool:t,prompt:p,resource:u,resource_template:ut" {
		t.Fatalf("decided %s", got)
	}
	if len(ids) != 1 || ids[0] != `"r1"` {
		t.Fatalf("pick saw ids %q", ids)
	}
	if _, _, err := f.filterMessage([]byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"boom"}]}}`), pick, nil); err == nil || !strings.Contains(err.Error(), "policy down") {
		t.Fatalf("decide error not returned: %v", err)
	}
}

// assertNoDenied decodes out the way lenient clients do (Go's
// encoding/json: case-insensitive keys, last duplicate wins; and a plain
// map) and fails if any list entry named with deny survives.
func assertNoDenied(t testing.TB, out []byte, deny string) {
	t.Helper()
	for _, name := range listedNames(out) {
		if strings.Contains(name, deny) {
			t.Fatalf("denied entry %q survived in %s", name, out)
		}
	}
}

func listedNames(msg []byte) []string {
	var lenient struct {
		Result struct {
			Tools             []struct{ Name string }
			Prompts           []struct{ Name string }
			Resources         []struct{ URI string }
			ResourceTemplates []struct{ URITemplate string }
		}
	}
	var names []string
	if json.Unmarshal(msg, &lenient) == nil {
		r := lenient.Result
		for _, e := range r.Tools {
			names = append(names, e.Name)
		}
		for _, e := range r.Prompts {
			names = append(names, e.Name)
		}
		for _, e := range r.Resources {
			names = append(names, e.URI)
		}
		for _, e := range r.ResourceTemplates {
			names = append(names, e.URITemplate)
		}
	}
	var generic map[string]any
	if json.Unmarshal(msg, &generic) == nil {
		if r, ok := generic["result"].(map[string]any); ok {
			for _, k := range []string{"tools", "prompts", "resources", "resourceTemplates"} {
				l, _ := r[k].([]any)
				for _, e := range l {
					if o, ok := e.(map[string]any); ok {
						for _, nk := range []string{"name", "uri", "uriTemplate"} {
							if s, ok := o[nk].(string); ok {
								names = append(names, k+"/"+s)
							}
						}
					}
				}
			}
		}
	}
	return names
}

func TestCutKeepsBytes(t *testing.T) {
	in := []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}  ,  {"name":"deleteX"},{"name":"b"}]}}`)
	var f filterer
	out, _, err := f.filterMessage(in, pickAll(allowExcept("delete")), make([]byte, 0, 8))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}`; !bytes.Equal(out, []byte(want)) {
		t.Fatalf("got %s", out)
	}
}
