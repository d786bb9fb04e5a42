package decisionlog

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// policyLikeInput is a typed input like policy.Input: masks reach into it
// through its JSON form.
type policyLikeInput struct {
	Request struct {
		Headers map[string]string `json:"headers"`
	} `json:"request"`
	MCP struct {
		Tool      string          `json:"tool"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"mcp"`
}

func generic(t *testing.T, v any) any {
	t.Helper()
	g, err := toGeneric(v)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestMaskApply(t *testing.T) {
	typed := func() *policyLikeInput {
		var p policyLikeInput
		p.Request.Headers = map[string]string{"x-api-key": "k", "accept": "*/*"}
		p.MCP.Tool = "search"
		p.MCP.Arguments = json.RawMessage(`{"password":"pw","q":"x"}`)
		return &p
	}
	nested := func() map[string]any {
		return map[string]any{
			"mcp": map[string]any{"arguments": map[string]any{"q": "x", "token": "t"}, "tool": "search"},
			"list": []any{
				map[string]any{"secret": 1, "keep": 2},
				"b", "c",
			},
			"a/b":  map[string]any{"c~d": "v"},
			"keep": map[string]any{"x": 1},
		}
	}
	tests := []struct {
		name       string
		mask       []string
		input      func() any
		result     any
		wantInput  any
		wantResult any
		wantErased []string
	}{
		{
			name:  "nested key",
			mask:  []string{"/input/mcp/arguments/token"},
			input: func() any { return nested() },
			wantInput: func() any {
				m := nested()
				delete(m["mcp"].(map[string]any)["arguments"].(map[string]any), "token")
				return m
			}(),
			wantErased: []string{"/input/mcp/arguments/token"},
		},
		{
			name:  "array index removes the element",
			mask:  []string{"/input/list/1"},
			input: func() any { return nested() },
			wantInput: func() any {
				m := nested()
				m["list"] = []any{m["list"].([]any)[0], "c"}
				return m
			}(),
			wantErased: []string{"/input/list/1"},
		},
		{
			name:  "indices refer to the original array",
			mask:  []string{"/input/list/2", "/input/list/0"},
			input: func() any { return nested() },
			wantInput: func() any {
				m := nested()
				m["list"] = []any{"b"}
				return m
			}(),
			wantErased: []string{"/input/list/2", "/input/list/0"},
		},
		{
			name:  "key inside an array element",
			mask:  []string{"/input/list/0/secret"},
			input: func() any { return nested() },
			wantInput: func() any {
				m := nested()
				delete(m["list"].([]any)[0].(map[string]any), "secret")
				return m
			}(),
			wantErased: []string{"/input/list/0/secret"},
		},
		{
			name:  "escaped segments",
			mask:  []string{"/input/a~1b/c~0d"},
			input: func() any { return nested() },
			wantInput: func() any {
				m := nested()
				m["a/b"] = map[string]any{}
				return m
			}(),
			wantErased: []string{"/input/a~1b/c~0d"},
		},
		{
			name: "missing paths are no-ops",
			mask: []string{"/input/nope", "/input/mcp/nope/deeper", "/input/list/7", "/input/list/x",
				"/input/list/01", "/input/keep/x/y", "/result/nope"},
			input:      func() any { return nested() },
			result:     map[string]any{"allow": true},
			wantInput:  nested(),
			wantResult: map[string]any{"allow": true},
		},
		{
			name:       "whole input and a result field",
			mask:       []string{"/input", "/result/reason"},
			input:      func() any { return nested() },
			result:     map[string]any{"allow": false, "reason": "r"},
			wantInput:  nil,
			wantResult: map[string]any{"allow": false},
			wantErased: []string{"/input", "/result/reason"},
		},
		{
			name:       "ancestor and descendant",
			mask:       []string{"/input/mcp/arguments/q", "/input/mcp"},
			input:      func() any { return nested() },
			wantInput:  func() any { m := nested(); delete(m, "mcp"); return m }(),
			wantErased: []string{"/input/mcp"},
		},
		{
			name:  "typed input, typed map and raw JSON",
			mask:  []string{"/input/request/headers/x-api-key", "/input/mcp/arguments/password"},
			input: func() any { return typed() },
			wantInput: map[string]any{
				"request": map[string]any{"headers": map[string]any{"accept": "*/*"}},
				"mcp":     map[string]any{"tool": "search", "arguments": map[string]any{"q": "x"}},
			},
			wantErased: []string{"/input/request/headers/x-api-key", "/input/mcp/arguments/password"},
		},
		{
			name:       "typed input, nothing to mask, is kept as is",
			mask:       []string{"/input/request/headers/absent"},
			input:      func() any { return typed() },
			wantInput:  typed(),
			wantErased: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := newMasker(tt.mask)
			if err != nil {
				t.Fatal(err)
			}
			in := tt.input()
			pristine := tt.input()
			e := Event{Input: in, Result: tt.result}
			m.apply(&e)
			got, want := e.Input, tt.wantInput
			if _, isTyped := want.(*policyLikeInput); !isTyped && got != nil {
				got = generic(t, got)
				want = generic(t, want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("input = %#v\nwant    %#v", got, want)
			}
			if tt.wantResult != nil && !reflect.DeepEqual(e.Result, tt.wantResult) {
				t.Errorf("result = %#v, want %#v", e.Result, tt.wantResult)
			}
			if !slices.Equal(e.Erased, tt.wantErased) {
				t.Errorf("erased = %v, want %v", e.Erased, tt.wantErased)
			}
			if !reflect.DeepEqual(in, pristine) {
				t.Errorf("the caller's input was modified:\n%#v\nwant %#v", in, pristine)
			}
		})
	}
}

// TestMaskCopiesOnlyMaskedBranches checks that unmasked branches are
// shared, not copied.
func TestMaskCopiesOnlyMaskedBranches(t *testing.T) {
	m, _ := newMasker([]string{"/input/a/secret"})
	keep := map[string]any{"big": "x"}
	a := map[string]any{"secret": "s", "sibling": keep}
	in := map[string]any{"a": a, "other": keep}
	e := Event{Input: in}
	m.apply(&e)
	out := e.Input.(map[string]any)
	if ptr(out) == ptr(in) || ptr(out["a"]) == ptr(a) {
		t.Fatal("masked path not copied")
	}
	if ptr(out["other"]) != ptr(keep) || ptr(out["a"].(map[string]any)["sibling"]) != ptr(keep) {
		t.Fatal("unmasked branches were copied")
	}
	if _, ok := a["secret"]; !ok {
		t.Fatal("original modified")
	}
	// No match: the very same value is kept.
	e = Event{Input: map[string]any{"b": 1}}
	orig := e.Input
	m.apply(&e)
	if ptr(e.Input) != ptr(orig) || e.Erased != nil {
		t.Fatal("unmatched mask changed the event")
	}
}

func ptr(v any) uintptr { return reflect.ValueOf(v).Pointer() }

func TestParsePointer(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"/input/mcp/arguments", []string{"input", "mcp", "arguments"}, ""},
		{"/result", []string{"result"}, ""},
		{"/input/a~1b/~0x", []string{"input", "a/b", "~x"}, ""},
		{"", nil, "must not be empty"},
		{"input/x", nil, "must be a JSON pointer starting with /input or /result"},
		{"/labels/x", nil, "must start with /input or /result"},
		{"/input//x", nil, "must not contain empty segments"},
		{"/input/", nil, "must not contain empty segments"},
		{"/input/a~2", nil, `"~" must be escaped`},
		{"/input/a~", nil, `"~" must be escaped`},
		{"/input/a\nb", nil, "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePointer(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
