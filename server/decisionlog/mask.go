package decisionlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// masker erases configured JSON pointers from events. It is built once and
// read-only afterwards; apply never modifies the values it is given: the
// maps and slices on a masked path are copied (only those), the rest of the
// document is shared with the caller.
type masker struct {
	rules  []string  // as configured, in order
	input  *maskNode // /input...
	result *maskNode // /result...
}

// maskNode is one segment of the mask trie.
type maskNode struct {
	children map[string]*maskNode
	rule     int // index into rules of the mask ending here; -1 if none
}

// parsePointer splits a mask path into unescaped segments ("~1" is "/",
// "~0" is "~", as in RFC 6901). The first segment is input or result.
func parsePointer(p string) ([]string, error) {
	switch {
	case p == "":
		return nil, errors.New("must not be empty")
	case p[0] != '/':
		return nil, errors.New("must be a JSON pointer starting with /input or /result")
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		if s == "" {
			return nil, errors.New("must not contain empty segments")
		}
		for j := 0; j < len(s); j++ {
			if s[j] == '~' && (j+1 == len(s) || (s[j+1] != '0' && s[j+1] != '1')) {
				return nil, errors.New(`"~" must be escaped as "~0" ("/" as "~1")`)
			}
		}
		if strings.ContainsFunc(s, urlcheck.IsControl) {
			return nil, errors.New("must not contain control characters")
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	if parts[0] != "input" && parts[0] != "result" {
		return nil, errors.New("must start with /input or /result")
	}
	return parts, nil
}

// newMasker builds the trie; paths must have been validated. It returns
// nil when there is nothing to mask.
func newMasker(paths []string) (*masker, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	m := &masker{rules: slices.Clone(paths)}
	for i, p := range paths {
		parts, err := parsePointer(p)
		if err != nil {
			return nil, err
		}
		root := &m.input
		if parts[0] == "result" {
			root = &m.result
		}
		if *root == nil {
			*root = &maskNode{rule: -1}
		}
		n := *root
		for _, s := range parts[1:] {
			c := n.children[s]
			if c == nil {
				if n.children == nil {
					n.children = map[string]*maskNode{}
				}
				c = &maskNode{rule: -1}
				n.children[s] = c
			}
			n = c
		}
		if n.rule < 0 {
			n.rule = i
		}
	}
	return m, nil
}

// apply erases the masked values of ev (a private copy of the caller's
// Event) and sets ev.Erased to the masks that removed something, in
// configuration order. Values shared with the caller are not modified.
func (m *masker) apply(ev *Event) {
	if m == nil {
		return
	}
	hit := make([]bool, len(m.rules))
	ev.Input = m.applyRoot(ev.Input, m.input, hit)
	ev.Result = m.applyRoot(ev.Result, m.result, hit)
	var erased []string
	for i, h := range hit {
		if h {
			erased = append(erased, m.rules[i])
		}
	}
	if erased != nil {
		ev.Erased = append(slices.Clip(ev.Erased), erased...)
	}
}

func (m *masker) applyRoot(doc any, t *maskNode, hit []bool) any {
	if t == nil || doc == nil {
		return doc
	}
	if t.rule >= 0 {
		hit[t.rule] = true
		return nil
	}
	if v, changed := walk(doc, t, false, hit); changed {
		return v
	}
	return doc
}

// walk erases t's paths below node. owned reports whether node was created
// by the masker (and may be modified in place). It returns the new node and
// whether anything was erased; node itself is never modified unless owned.
func walk(node any, t *maskNode, owned bool, hit []bool) (any, bool) {
	if len(t.children) == 0 {
		return node, false
	}
	switch v := node.(type) {
	case nil, string, bool, float64, json.Number:
		return node, false
	case map[string]any:
		var out map[string]any
		for key, c := range t.children {
			cur, ok := v[key]
			if !ok {
				continue
			}
			if c.rule >= 0 {
				if out == nil {
					out = ownMap(v, owned)
				}
				delete(out, key)
				hit[c.rule] = true
				continue
			}
			if nv, changed := walk(cur, c, owned, hit); changed {
				if out == nil {
					out = ownMap(v, owned)
				}
				out[key] = nv
			}
		}
		if out == nil {
			return node, false
		}
		return out, true
	case []any:
		var out []any
		var remove []int
		for key, c := range t.children {
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(v) || (key != "0" && key[0] == '0') {
				continue
			}
			if c.rule >= 0 {
				remove = append(remove, i)
				hit[c.rule] = true
				continue
			}
			if nv, changed := walk(v[i], c, owned, hit); changed {
				if out == nil {
					out = ownSlice(v, owned)
				}
				out[i] = nv
			}
		}
		if len(remove) > 0 {
			if out == nil {
				out = ownSlice(v, owned)
			}
			// Indices refer to the original array: delete from the end.
			slices.Sort(remove)
			for _, i := range slices.Backward(remove) {
				out = slices.Delete(out, i, i+1)
			}
		}
		if out == nil {
			return node, false
		}
		return out, true
	default:
		// A struct, pointer, typed map or json.RawMessage: convert this
		// subtree to its generic JSON form (a fresh value we own).
		g, err := toGeneric(node)
		if err != nil {
			return node, false
		}
		if nv, changed := walk(g, t, true, hit); changed {
			return nv, true
		}
		return node, false
	}
}

func ownMap(m map[string]any, owned bool) map[string]any {
	if owned {
		return m
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func ownSlice(s []any, owned bool) []any {
	if owned {
		return s
	}
	return slices.Clone(s)
}

// toGeneric returns v's JSON form as map[string]any / []any / scalars
// (numbers as json.Number, so they re-encode unchanged).
func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var g any
	if err := d.Decode(&g); err != nil {
		return nil, err
	}
	return g, nil
}
