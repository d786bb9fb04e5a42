package decisionlog

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// FuzzMask checks that masking never panics, never modifies the caller's
// document, reports exactly the mask that removed something, and leaves the
// document unchanged when nothing matched.
func FuzzMask(f *testing.F) {
	for _, s := range [][2]string{
		{`{"mcp":{"arguments":{"q":"x"}}}`, "/input/mcp/arguments"},
		{`{"a":[1,{"b":2},3]}`, "/input/a/1/b"},
		{`{"a":[1,2,3]}`, "/input/a/0"},
		{`[1,2]`, "/input/1"},
		{`{"a/b":{"~":1}}`, "/input/a~1b/~0"},
		{`{"a":1}`, "/input/a/b/c"},
		{`{"a":1}`, "/input"},
		{`"scalar"`, "/input/x"},
		{`{"a":{"b":1}}`, "/result/a"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, doc, path string) {
		parse := func() any {
			d := json.NewDecoder(bytes.NewReader([]byte(doc)))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				return err
			}
			return v
		}
		in := parse()
		if _, bad := in.(error); bad {
			return
		}
		m, err := newMasker([]string{path})
		if err != nil {
			return
		}
		e := Event{Input: in, Result: parse()}
		m.apply(&e)
		if pristine := parse(); !reflect.DeepEqual(in, pristine) {
			t.Fatalf("caller's document modified: %#v, want %#v", in, pristine)
		}
		switch {
		case len(e.Erased) == 0:
			if !reflect.DeepEqual(e.Input, in) {
				t.Fatalf("nothing erased but input changed: %#v", e.Input)
			}
		case !slices.Equal(e.Erased, []string{path}):
			t.Fatalf("erased = %q, want [%q]", e.Erased, path)
		default:
			if reflect.DeepEqual(e.Input, in) && reflect.DeepEqual(e.Result, in) {
				t.Fatalf("%q erased but nothing changed", path)
			}
		}
		if _, err := json.Marshal(e); err != nil {
			t.Fatalf("masked event does not encode: %v", err)
		}
	})
}
