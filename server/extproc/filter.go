package extproc

import (
	"errors"
)

// EntryKind names what a list entry lets the caller use.
type EntryKind string

// The list entries ext_proc filters, and the call each stands for.
const (
	Tool             EntryKind = "tool"              // tools/list entry: tools/call of params.name
	Prompt           EntryKind = "prompt"            // prompts/list entry: prompts/get of params.name
	Resource         EntryKind = "resource"          // resources/list entry: resources/read of params.uri
	ResourceTemplate EntryKind = "resource_template" // resources/templates/list entry: its uriTemplate
)

// listSpec is one list a result may carry: its key, the key naming an
// entry, and what an entry is.
type listSpec struct {
	key, nameKey string
	kind         EntryKind
}

var listSpecs = [...]listSpec{
	{"tools", "name", Tool},
	{"prompts", "name", Prompt},
	{"resources", "uri", Resource},
	{"resourceTemplates", "uriTemplate", ResourceTemplate},
}

// Reasons a message is refused (the caller fails closed).
var (
	errBatch      = errors.New("a JSON-RPC batch")
	errAmbiguous  = errors.New("duplicate or case-variant member in a JSON-RPC message")
	errNotMessage = errors.New("not a JSON-RPC message")
	errTooLarge   = errors.New("response larger than the configured limit")
)

// decideFunc decides one entry.
type decideFunc func(kind EntryKind, name string) (bool, error)

// filterStats counts what one filterMessage call did.
type filterStats struct {
	response       bool // a JSON-RPC response (result or error)
	lists          int  // list arrays seen
	kept, removed  int
	changedMessage bool
}

// envelope members filterMessage interprets.
var envKeys = [...]string{"jsonrpc", "id", "method", "result", "error"}

const (
	envID = 1 + iota
	envMethod
	envResult
	envError
)

type span struct{ from, to int }

// elem is one list element: its span and whether it stays.
type elem struct {
	span
	keep bool
}

// filterer holds reusable scratch space; not safe for concurrent use.
type filterer struct {
	elems []elem
	lists []listEdit
}

type listEdit struct {
	from, to int // elems[from:to]
}

// filterMessage filters the list(s) in one JSON-RPC message, in[...]: for a
// response whose result is an object, every entry of its tools, prompts,
// resources and resourceTemplates arrays is kept only if decide allows it
// (pick chooses decide from the response's raw id, nil when absent).
// Dropped elements are cut from the bytes with their separator; nothing
// else changes. Requests, notifications and error responses come back
// unchanged. The result aliases in when nothing changed, else it is
// appended to out[:0].
//
// Refused (error): invalid JSON, trailing data, a batch (array), a value
// that is not a JSON-RPC message, a duplicate or case-variant envelope,
// result or list key (decoders disagree about which copy counts), and any
// decide error. An entry that is not an object or whose name key is
// missing, duplicated, case-variant, not a string or undecodable is dropped.
func (f *filterer) filterMessage(in []byte, pick func(id []byte) decideFunc, out []byte) ([]byte, filterStats, error) {
	var st filterStats
	env, err := scanEnvelope(in)
	if err != nil {
		return nil, st, err
	}
	switch {
	case env.seen[envMethod] && (env.seen[envResult] || env.seen[envError]):
		return nil, st, errAmbiguous
	case env.seen[envMethod]:
		return in, st, nil
	case env.seen[envResult] && env.seen[envError]:
		return nil, st, errAmbiguous
	case !env.seen[envResult] && !env.seen[envError]:
		return nil, st, errNotMessage
	}
	st.response = true
	if env.seen[envError] || in[env.at[envResult].from] != '{' {
		return in, st, nil
	}
	var id []byte
	if env.seen[envID] {
		id = in[env.at[envID].from:env.at[envID].to]
	}
	if err := f.filterResult(in, env.at[envResult].from, pick(id), &st); err != nil {
		return nil, st, err
	}
	if st.removed == 0 {
		return in, st, nil
	}
	st.changedMessage = true
	return f.cut(in, out[:0]), st, nil
}

// envelope is where the members of envKeys are in a message, and which
// are present.
type envelope struct {
	at   [len(envKeys)]span
	seen [len(envKeys)]bool
}

// scanEnvelope checks that in is one JSON object with no repeated or
// case-variant envelope member and returns where those members are.
func scanEnvelope(in []byte) (envelope, error) {
	var env envelope
	i := skipWS(in, 0)
	switch {
	case i == len(in):
		return env, errNotMessage
	case in[i] == '[':
		return env, errBatch
	case in[i] != '{':
		return env, errNotMessage
	}
	end, err := members(in, i, 0, func(k0, k1, v0 int) (int, error) {
		for n, k := range envKeys {
			exact, fold := keyMatch(in[k0:k1], k)
			if !fold {
				continue
			}
			if !exact || env.seen[n] {
				return 0, errAmbiguous
			}
			v1, err := scanValue(in, v0, 1)
			env.seen[n], env.at[n] = true, span{v0, v1}
			return v1, err
		}
		return scanValue(in, v0, 1)
	})
	if err != nil {
		return env, err
	}
	if skipWS(in, end) != len(in) {
		return env, errSyntax
	}
	return env, nil
}

// filterResult decides the entries of the lists in the result object at
// in[from], recording them in f.elems and f.lists.
func (f *filterer) filterResult(in []byte, from int, decide decideFunc, st *filterStats) error {
	f.elems, f.lists = f.elems[:0], f.lists[:0]
	var listSeen [len(listSpecs)]bool
	_, err := members(in, from, 1, func(k0, k1, v0 int) (int, error) {
		for n := range listSpecs {
			spec := &listSpecs[n]
			exact, fold := keyMatch(in[k0:k1], spec.key)
			if !fold {
				continue
			}
			if !exact || listSeen[n] {
				return 0, errAmbiguous
			}
			listSeen[n] = true
			if in[v0] != '[' {
				return scanValue(in, v0, 2)
			}
			return f.filterList(in, v0, spec, decide, st)
		}
		return scanValue(in, v0, 2)
	})
	return err
}

// filterList decides each entry of the list at in[v0].
func (f *filterer) filterList(in []byte, v0 int, spec *listSpec, decide decideFunc, st *filterStats) (int, error) {
	st.lists++
	from := len(f.elems)
	v1, err := elements(in, v0, 2, func(e0 int) (int, error) {
		e1, keep, err := f.entry(in, e0, spec, decide)
		if err != nil {
			return 0, err
		}
		f.elems = append(f.elems, elem{span{e0, e1}, keep})
		if keep {
			st.kept++
		} else {
			st.removed++
		}
		return e1, nil
	})
	if err == nil && len(f.elems) > from {
		f.lists = append(f.lists, listEdit{from, len(f.elems)})
	}
	return v1, err
}

// entry scans the list element at in[e0] and decides it.
func (f *filterer) entry(in []byte, e0 int, spec *listSpec, decide decideFunc) (int, bool, error) {
	if in[e0] != '{' {
		e1, err := scanValue(in, e0, 3)
		return e1, false, err
	}
	var name span
	n, bad := 0, false
	e1, err := members(in, e0, 3, func(k0, k1, v0 int) (int, error) {
		v1, err := scanValue(in, v0, 4)
		if exact, fold := keyMatch(in[k0:k1], spec.nameKey); fold {
			n++
			bad = bad || !exact
			name = span{v0, v1}
		}
		return v1, err
	})
	if err != nil || bad || n != 1 || in[name.from] != '"' {
		return e1, false, err
	}
	s, ok := decodeString(in[name.from:name.to])
	if !ok || s == "" {
		return e1, false, nil
	}
	keep, err := decide(spec.kind, s)
	return e1, keep, err
}

// cut appends in to out without the dropped elements: each kept element
// keeps the separator that preceded it, the first kept one the array's
// leading whitespace.
func (f *filterer) cut(in, out []byte) []byte {
	pos := 0
	for _, l := range f.lists {
		es := f.elems[l.from:l.to]
		out = append(out, in[pos:es[0].from]...)
		first := true
		for j, e := range es {
			if !e.keep {
				continue
			}
			if !first {
				out = append(out, in[es[j-1].to:e.from]...)
			}
			out = append(out, in[e.from:e.to]...)
			first = false
		}
		pos = es[len(es)-1].to
	}
	return append(out, in[pos:]...)
}
