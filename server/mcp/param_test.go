package mcp

import (
	"errors"
	"testing"
)

func TestParamHeaders(t *testing.T) {
	const call = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_sql","arguments":{"region":"eu-west1","Limit":10,"dry":true,"ratio":1.5,"tags":["a"],"note":"a,b","uni":"zürich"}}}`
	declared := func(tool string) map[string]string {
		if tool == "run_sql" {
			return map[string]string{"target-region": "region"}
		}
		return nil
	}
	type ph = []ParamHeader
	tests := []struct {
		name    string
		method  string
		body    string
		headers ph
		decl    func(string) map[string]string
		ok      bool
	}{
		{"no headers", "POST", call, nil, nil, true},
		{"same-name string", "POST", call, ph{{"region", "eu-west1"}}, nil, true},
		{"same-name case-insensitive key", "POST", call, ph{{"limit", "10"}}, nil, true},
		{"boolean", "POST", call, ph{{"dry", "true"}}, nil, true},
		{"base64 value", "POST", call, ph{{"uni", *b64("zürich")}}, nil, true},
		{"string mismatch", "POST", call, ph{{"region", "us-east1"}}, nil, false},
		{"integer as other text", "POST", call, ph{{"limit", "010"}}, nil, false},
		{"non-integer number", "POST", call, ph{{"ratio", "1.5"}}, nil, false},
		{"array argument", "POST", call, ph{{"tags", "a"}}, nil, false},
		{"absent argument", "POST", call, ph{{"zone", "a"}}, nil, false},
		{"comma-joined (repeated header)", "POST", call, ph{{"region", "eu-west1,us-east1"}}, nil, false},
		{"comma in body value sent raw", "POST", call, ph{{"note", "a,b"}}, nil, false},
		{"comma in body value sent base64", "POST", call, ph{{"note", *b64("a,b")}}, nil, true},
		{"repeated name", "POST", call, ph{{"region", "eu-west1"}, {"region", "eu-west1"}}, nil, false},
		{"bad base64", "POST", call, ph{{"region", "=?base64?!!?="}}, nil, false},
		{"invalid name", "POST", call, ph{{"re gion", "eu-west1"}}, nil, false},
		{"declared mapping", "POST", call, ph{{"target-region", "eu-west1"}}, declared, true},
		{"declared mapping mismatch", "POST", call, ph{{"target-region", "us-east1"}}, declared, false},
		{"declared mirror missing", "POST", call, nil, declared, false},
		{"undeclared name with declaration", "POST", call, ph{{"target-region", "eu-west1"}, {"zone", "x"}}, declared, false},
		{"on tools/list", "POST", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, ph{{"region", "eu-west1"}}, nil, false},
		{"on a notification", "POST", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, ph{{"a", "b"}}, nil, false},
		{"on GET", "GET", "", ph{{"a", "b"}}, nil, false},
		{"on a batch", "POST", "[" + call + "]", ph{{"region", "eu-west1"}}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := post(Version20250326, tc.body)
			in.HTTPMethod, in.ParamHeaders, in.ParamArguments = tc.method, tc.headers, tc.decl
			_, err := Parse(in)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var me *Error
			if !errors.As(err, &me) || me.Status != 400 || me.Code != CodeHeaderMismatch {
				t.Fatalf("want 400 -32020, got %v", err)
			}
		})
	}
}
