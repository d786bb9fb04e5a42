package mcp

import (
	"bytes"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/mcpauthz/mcpauthz/internal/jsonstr"
)

// maxDepth is the deepest nesting of objects and arrays Parse accepts.
const maxDepth = 64

// linearKeys is the number of keys per object checked for duplicates by
// linear comparison; larger objects are checked by sorting when they close,
// so the cost stays O(n log n) for hostile bodies.
const linearKeys = 16

// Value types recorded in a span.
const (
	tAbsent byte = iota
	tString
	tInt   // number without fraction or exponent
	tFloat // any other number
	tObject
	tArray
	tBool
	tNull
)

// span is a validated JSON value inside the body.
type span struct {
	start, end int
	typ        byte
	esc        bool // string contains escapes
}

// Object modes: which well-known fields an object's keys are captured into.
const (
	modeGeneric uint8 = iota
	modeMessage
	modeParams
	modeRef
	modeMeta
)

const metaVersionKey = "io.modelcontextprotocol/protocolVersion"

var (
	messageKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	paramsKeys  = []string{"name", "uri", "arguments", "ref", "_meta", "argument", "cursor"}
	refKeys     = []string{"type", "name", "uri"}
	metaKeys    = []string{metaVersionKey}
)

// fields receives the well-known members of one message.
type fields struct {
	jsonrpc, id, method, params, result, err span
	name, uri, arguments, ref                span // params.*
	refType, refName, refURI                 span // params.ref.*
	metaVersion                              span // params._meta[metaVersionKey]
}

// slot returns where the value of key goes in mode, and the mode for an
// object value. A key that is not well-known but equals one under case
// folding is refused.
func (f *fields) slot(mode uint8, key []byte) (*span, uint8, *Error) {
	var known []string
	switch mode {
	case modeMessage:
		switch string(key) {
		case "jsonrpc":
			return &f.jsonrpc, modeGeneric, nil
		case "id":
			return &f.id, modeGeneric, nil
		case "method":
			return &f.method, modeGeneric, nil
		case "params":
			return &f.params, modeParams, nil
		case "result":
			return &f.result, modeGeneric, nil
		case "error":
			return &f.err, modeGeneric, nil
		}
		known = messageKeys
	case modeParams:
		switch string(key) {
		case "name":
			return &f.name, modeGeneric, nil
		case "uri":
			return &f.uri, modeGeneric, nil
		case "arguments":
			return &f.arguments, modeGeneric, nil
		case "ref":
			return &f.ref, modeRef, nil
		case "_meta":
			return nil, modeMeta, nil
		}
		known = paramsKeys
	case modeRef:
		switch string(key) {
		case "type":
			return &f.refType, modeGeneric, nil
		case "name":
			return &f.refName, modeGeneric, nil
		case "uri":
			return &f.refURI, modeGeneric, nil
		}
		known = refKeys
	case modeMeta:
		if string(key) == metaVersionKey {
			return &f.metaVersion, modeGeneric, nil
		}
		known = metaKeys
	default:
		return nil, modeGeneric, nil
	}
	for _, k := range known {
		if string(key) != k && foldCompare(key, []byte(k)) == 0 {
			return nil, 0, parseErr("case_variant_key", "object key differs from a protocol field only in case")
		}
	}
	return nil, modeGeneric, nil
}

// keyRef locates an object key: in data, or (when it had escapes) in the
// unescaped scratch buffer. Keys hold no pointers so that the parser and its
// initial buffers can live on the stack.
type keyRef struct {
	off, n  int
	scratch bool
}

// keyStack holds the keys of the open objects, innermost last. The first
// keys live inline so that typical bodies need no allocation.
type keyStack struct {
	n     int
	small [32]keyRef
	big   []keyRef // used instead of small once it overflows
}

func (s *keyStack) push(k keyRef) {
	if s.big == nil && s.n == len(s.small) {
		s.big = make([]keyRef, s.n, 2*s.n)
		copy(s.big, s.small[:])
	}
	if s.big != nil {
		s.big = append(s.big[:s.n], k)
	} else {
		s.small[s.n] = k
	}
	s.n++
}

// seg returns keys [base, n) for temporary use.
func (s *keyStack) seg(base int) []keyRef {
	if s.big != nil {
		return s.big[base:s.n]
	}
	return s.small[base:s.n]
}

// parser is a single-pass strict JSON validator over data.
type parser struct {
	data    []byte
	i       int
	keys    keyStack
	scratch []byte // unescaped keys (allocated only when a key has escapes)
	// probe: only the message id is wanted (refusals): the _meta
	// protocol version is not checked.
	probe bool
}

func (p *parser) key(k keyRef) []byte {
	if k.scratch {
		return p.scratch[k.off : k.off+k.n]
	}
	return p.data[k.off : k.off+k.n]
}

func (p *parser) skipWS() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// end checks that only whitespace follows the top-level value.
func (p *parser) end() *Error {
	p.skipWS()
	if p.i != len(p.data) {
		return parseErr("trailing_data", "data after the top-level JSON value")
	}
	return nil
}

func (p *parser) eof() *Error { return parseErr("unexpected_eof", "unexpected end of JSON input") }

// syntax reports an unexpected byte at p.i.
func (p *parser) syntax() *Error {
	if p.i >= len(p.data) {
		return p.eof()
	}
	if c := p.data[p.i]; c >= utf8.RuneSelf {
		if r, size := utf8.DecodeRune(p.data[p.i:]); r == utf8.RuneError && size == 1 {
			return parseErr("invalid_utf8", "invalid UTF-8")
		}
	}
	return parseErr("syntax_error", "invalid JSON syntax")
}

// value validates one JSON value starting at p.i (after whitespace).
func (p *parser) value(depth int, mode uint8, f *fields) (span, *Error) {
	p.skipWS()
	if p.i >= len(p.data) {
		return span{}, p.eof()
	}
	start := p.i
	switch c := p.data[p.i]; c {
	case '{':
		return p.object(depth+1, mode, f)
	case '[':
		return p.array(depth + 1)
	case '"':
		esc, err := p.str()
		if err != nil {
			return span{}, err
		}
		return span{start: start, end: p.i, typ: tString, esc: esc}, nil
	case 't':
		return p.literal("true", tBool)
	case 'f':
		return p.literal("false", tBool)
	case 'n':
		return p.literal("null", tNull)
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return p.number()
		}
		return span{}, p.syntax()
	}
}

func (p *parser) literal(lit string, typ byte) (span, *Error) {
	start := p.i
	if len(p.data)-p.i < len(lit) || string(p.data[p.i:p.i+len(lit)]) != lit {
		return span{}, parseErr("syntax_error", "invalid JSON literal")
	}
	p.i += len(lit)
	return span{start: start, end: p.i, typ: typ}, nil
}

func (p *parser) number() (span, *Error) {
	d, i, start := p.data, p.i, p.i
	bad := func() (span, *Error) { return span{}, parseErr("invalid_number", "invalid JSON number") }
	if d[i] == '-' {
		i++
	}
	if i >= len(d) {
		return bad()
	}
	switch {
	case d[i] == '0':
		i++
	case '1' <= d[i] && d[i] <= '9':
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
	default:
		return bad()
	}
	typ := tInt
	if i < len(d) && d[i] == '.' {
		i++
		n := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == n {
			return bad()
		}
		typ = tFloat
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		n := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		if i == n {
			return bad()
		}
		typ = tFloat
	}
	p.i = i
	return span{start: start, end: i, typ: typ}, nil
}

// str validates a string starting at the opening quote at p.i and leaves
// p.i after the closing quote.
func (p *parser) str() (esc bool, err *Error) {
	d := p.data
	i := p.i + 1
	for {
		if i >= len(d) {
			return esc, parseErr("unexpected_eof", "unterminated string")
		}
		c := d[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				return esc, parseErr("invalid_utf8", "invalid UTF-8 in string")
			}
			i += size
			continue
		}
		switch {
		case c == '"':
			p.i = i + 1
			return esc, nil
		case c < 0x20:
			return esc, parseErr("control_character", "unescaped control character in string")
		case c != '\\':
			i++
			continue
		}
		esc = true
		i++
		if i >= len(d) {
			return esc, parseErr("unexpected_eof", "unterminated string")
		}
		switch d[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i++
		case 'u':
			r, ok := jsonstr.Hex4(d[i+1:])
			if !ok {
				return esc, parseErr("invalid_escape", "invalid \\u escape")
			}
			i += 5
			switch {
			case 0xD800 <= r && r < 0xDC00:
				if len(d)-i < 6 || d[i] != '\\' || d[i+1] != 'u' {
					return esc, parseErr("lone_surrogate", "unpaired UTF-16 surrogate escape")
				}
				r2, ok := jsonstr.Hex4(d[i+2:])
				if !ok {
					return esc, parseErr("invalid_escape", "invalid \\u escape")
				}
				if r2 < 0xDC00 || r2 > 0xDFFF {
					return esc, parseErr("lone_surrogate", "unpaired UTF-16 surrogate escape")
				}
				i += 6
			case 0xDC00 <= r && r <= 0xDFFF:
				return esc, parseErr("lone_surrogate", "unpaired UTF-16 surrogate escape")
			}
		default:
			return esc, parseErr("invalid_escape", "invalid escape sequence in string")
		}
	}
}

// appendUnescaped appends the decoded contents of a validated string to
// out. str refused what jsonstr.Append would fail on (malformed escapes,
// lone surrogates), so it never fails here.
func appendUnescaped(out, s []byte) []byte {
	out, _ = jsonstr.Append(out, s)
	return out
}

// rawString returns the decoded bytes of a validated string span.
func (p *parser) rawString(s span) []byte {
	b := p.data[s.start+1 : s.end-1]
	if s.esc {
		return appendUnescaped(make([]byte, 0, len(b)), b)
	}
	return b
}

// object validates an object at p.i, refusing duplicate and case-variant
// keys, and captures well-known fields into f according to mode.
func (p *parser) object(depth int, mode uint8, f *fields) (span, *Error) {
	if depth > maxDepth {
		return span{}, parseErr("too_deep", "JSON nesting too deep")
	}
	start := p.i
	p.i++
	base := p.keys.n
	scratchBase := len(p.scratch)
	p.skipWS()
	if p.i < len(p.data) && p.data[p.i] == '}' {
		p.i++
		return span{start: start, end: p.i, typ: tObject}, nil
	}
	for {
		key, err := p.objectKey(base)
		if err != nil {
			return span{}, err
		}
		if err := p.member(depth, mode, f, key); err != nil {
			return span{}, err
		}
		p.skipWS()
		if p.i >= len(p.data) {
			return span{}, p.eof()
		}
		if p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.data[p.i] != '}' {
			return span{}, p.syntax()
		}
		p.i++
		break
	}
	if err := p.sortedKeysUnique(base); err != nil {
		return span{}, err
	}
	p.keys.n = base
	p.scratch = p.scratch[:scratchBase]
	return span{start: start, end: p.i, typ: tObject}, nil
}

// objectKey reads the key at p.i of an object whose keys start at
// p.keys[base], refuses it if it folds to an earlier one (checked here
// for the first linearKeys keys, by sortedKeysUnique for more) and
// records it. The key is decoded (into p.scratch when it has escapes).
func (p *parser) objectKey(base int) ([]byte, *Error) {
	p.skipWS()
	if p.i >= len(p.data) {
		return nil, p.eof()
	}
	if p.data[p.i] != '"' {
		return nil, p.syntax()
	}
	ks := p.i
	esc, err := p.str()
	if err != nil {
		return nil, err
	}
	kr := keyRef{off: ks + 1, n: p.i - ks - 2}
	if esc {
		off := len(p.scratch)
		p.scratch = appendUnescaped(p.scratch, p.data[ks+1:p.i-1])
		kr = keyRef{off: off, n: len(p.scratch) - off, scratch: true}
	}
	key := p.key(kr)
	if p.keys.n-base < linearKeys {
		for _, k := range p.keys.seg(base) {
			if kb := p.key(k); foldCompare(kb, key) == 0 {
				return nil, dupErr(kb, key)
			}
		}
	}
	p.keys.push(kr)
	return key, nil
}

// member reads the colon and the value of the member named key, storing
// the value's span in f when mode captures key.
func (p *parser) member(depth int, mode uint8, f *fields, key []byte) *Error {
	p.skipWS()
	if p.i >= len(p.data) || p.data[p.i] != ':' {
		return p.syntax()
	}
	p.i++
	var dst *span
	child := modeGeneric
	if mode != modeGeneric {
		var err *Error
		if dst, child, err = f.slot(mode, key); err != nil {
			return err
		}
	}
	v, err := p.value(depth, child, f)
	if err != nil {
		return err
	}
	if dst != nil {
		*dst = v
	}
	return nil
}

// sortedKeysUnique refuses an object with more than linearKeys keys, from
// p.keys[base] on, two of which fold to the same key.
func (p *parser) sortedKeysUnique(base int) *Error {
	keys := p.keys.seg(base)
	if len(keys) <= linearKeys {
		return nil
	}
	slices.SortFunc(keys, func(a, b keyRef) int { return foldCompare(p.key(a), p.key(b)) })
	for j := 1; j < len(keys); j++ {
		if a, b := p.key(keys[j-1]), p.key(keys[j]); foldCompare(a, b) == 0 {
			return dupErr(a, b)
		}
	}
	return nil
}

func dupErr(a, b []byte) *Error {
	if bytes.Equal(a, b) {
		return parseErr("duplicate_key", "duplicate object key")
	}
	return parseErr("case_variant_key", "object keys differ only in case")
}

func (p *parser) array(depth int) (span, *Error) {
	if depth > maxDepth {
		return span{}, parseErr("too_deep", "JSON nesting too deep")
	}
	start := p.i
	p.i++
	p.skipWS()
	if p.i < len(p.data) && p.data[p.i] == ']' {
		p.i++
		return span{start: start, end: p.i, typ: tArray}, nil
	}
	for {
		if _, err := p.value(depth, modeGeneric, nil); err != nil {
			return span{}, err
		}
		p.skipWS()
		if p.i >= len(p.data) {
			return span{}, p.eof()
		}
		if p.data[p.i] == ',' {
			p.i++
			continue
		}
		if p.data[p.i] != ']' {
			return span{}, p.syntax()
		}
		p.i++
		return span{start: start, end: p.i, typ: tArray}, nil
	}
}

// foldCompare orders byte strings under Unicode simple case folding (the
// folding bytes.EqualFold and encoding/json use); it returns 0 exactly when
// bytes.EqualFold would report true for valid UTF-8.
func foldCompare(a, b []byte) int {
	for len(a) > 0 && len(b) > 0 {
		var ra, rb rune
		if c := a[0]; c < utf8.RuneSelf {
			ra, a = rune(c), a[1:]
		} else {
			r, n := utf8.DecodeRune(a)
			ra, a = r, a[n:]
		}
		if c := b[0]; c < utf8.RuneSelf {
			rb, b = rune(c), b[1:]
		} else {
			r, n := utf8.DecodeRune(b)
			rb, b = r, b[n:]
		}
		if ra == rb {
			continue
		}
		ca, cb := foldRune(ra), foldRune(rb)
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) > 0:
		return 1
	case len(b) > 0:
		return -1
	}
	return 0
}

// foldRune returns the smallest rune in r's simple case-folding orbit.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return m
}
