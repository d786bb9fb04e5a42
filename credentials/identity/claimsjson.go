package identity

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
	"unsafe"
)

// A fast exact decoder for claims.
//
// decodeClaimsOwned gives exactly what json.Decoder with UseNumber gives
// for one JSON object (FuzzDecodeClaims compares them): numbers as
// json.Number holding their literal, duplicate names keeping the last
// value, escapes and invalid UTF-8 decoded by encoding/json itself. It
// checks the grammar as it walks, in one pass, and accepts exactly what
// json.Valid accepts; on any refusal encoding/json describes the problem.
// Strings without escapes that are valid UTF-8 are not copied: they point
// into b, which the caller hands over and must never modify.

// maxClaimsDepth matches encoding/json's nesting limit.
const maxClaimsDepth = 10000

var (
	errNotObject = errors.New("identity: claims are not a JSON object")
	// errSyntax is internal: decodeClaimsOwned replaces it with
	// encoding/json's description.
	errSyntax = errors.New("identity: claims: invalid JSON")
)

func decodeClaimsOwned(b []byte) (map[string]any, error) {
	i := skipWS(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	d := claimsDecoder{b: b, i: i}
	m, err := d.object(0)
	if err == nil {
		d.ws()
		if d.i != len(b) {
			err = errSyntax
		}
	}
	if err == errSyntax {
		// Let encoding/json describe the problem.
		var v any
		if uerr := json.Unmarshal(b, &v); uerr != nil {
			return nil, errors.New("identity: claims: " + uerr.Error())
		}
		return nil, errSyntax
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

type claimsDecoder struct {
	b []byte
	i int
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func (d *claimsDecoder) ws() { d.i = skipWS(d.b, d.i) }

// next returns the byte at d.i after white space, 0 at the end (0 is never
// valid there).
func (d *claimsDecoder) next() byte {
	d.ws()
	if d.i == len(d.b) {
		return 0
	}
	return d.b[d.i]
}

// object decodes the object at d.i (a '{').
func (d *claimsDecoder) object(depth int) (map[string]any, error) {
	if depth >= maxClaimsDepth {
		return nil, errors.New("identity: claims: nested too deeply")
	}
	d.i++     // '{'
	hint := 8 // one group
	if depth == 0 {
		hint = 16 // a token's top level: most hold 8 to 16 claims
	}
	m := make(map[string]any, hint)
	if d.next() == '}' {
		d.i++
		return m, nil
	}
	for {
		if d.next() != '"' {
			return nil, errSyntax
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		if d.next() != ':' {
			return nil, errSyntax
		}
		d.i++
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		switch d.next() {
		case '}':
			d.i++
			return m, nil
		case ',':
			d.i++
		default:
			return nil, errSyntax
		}
	}
}

func (d *claimsDecoder) array(depth int) ([]any, error) {
	if depth >= maxClaimsDepth {
		return nil, errors.New("identity: claims: nested too deeply")
	}
	d.i++ // '['
	out := []any{}
	if d.next() == ']' {
		d.i++
		return out, nil
	}
	for {
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		switch d.next() {
		case ']':
			d.i++
			return out, nil
		case ',':
			d.i++
		default:
			return nil, errSyntax
		}
	}
}

// value decodes the value at d.i (white space already skipped).
func (d *claimsDecoder) value(depth int) (any, error) {
	if d.i == len(d.b) {
		return nil, errSyntax
	}
	switch d.b[d.i] {
	case '{':
		return d.object(depth)
	case '[':
		return d.array(depth)
	case '"':
		return d.str()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	}
	start := d.i
	if !d.number() {
		return nil, errSyntax
	}
	return json.Number(d.view(start, d.i)), nil
}

// literal consumes lit exactly.
func (d *claimsDecoder) literal(lit string) error {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return errSyntax
	}
	d.i += len(lit)
	return nil
}

// number consumes -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?.
func (d *claimsDecoder) number() bool {
	if d.at('-') {
		d.i++
	}
	switch {
	case d.at('0'):
		d.i++
	case d.i < len(d.b) && d.b[d.i] >= '1' && d.b[d.i] <= '9':
		d.digits()
	default:
		return false
	}
	if d.at('.') {
		d.i++
		if d.digits() == 0 {
			return false
		}
	}
	if d.at('e') || d.at('E') {
		d.i++
		if d.at('+') || d.at('-') {
			d.i++
		}
		if d.digits() == 0 {
			return false
		}
	}
	return true
}

func (d *claimsDecoder) at(c byte) bool { return d.i < len(d.b) && d.b[d.i] == c }

// digits consumes [0-9]* and says how many.
func (d *claimsDecoder) digits() int {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i - start
}

// str decodes the string at d.i (a '"').
func (d *claimsDecoder) str() (string, error) {
	start := d.i
	d.i++
	plain := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if plain {
				return d.view(start+1, d.i-1), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:d.i], &s); err != nil {
				return "", errors.New("identity: claims: " + err.Error())
			}
			return s, nil
		case c < 0x20:
			return "", errSyntax
		case c == '\\':
			plain = false
			if !d.escape() {
				return "", errSyntax
			}
			continue
		case c >= utf8.RuneSelf:
			if plain {
				// Copying is avoided only for valid UTF-8: encoding/json
				// replaces invalid bytes with U+FFFD.
				r, size := utf8.DecodeRune(d.b[d.i:])
				if r == utf8.RuneError && size == 1 {
					plain = false
				}
				d.i += size
				continue
			}
		}
		d.i++
	}
	return "", errSyntax
}

// escape consumes the escape at d.i (a backslash).
func (d *claimsDecoder) escape() bool {
	if d.i+1 >= len(d.b) {
		return false
	}
	switch d.b[d.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		d.i += 2
		return true
	case 'u':
		if len(d.b)-d.i < 6 {
			return false
		}
		for _, h := range d.b[d.i+2 : d.i+6] {
			if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
				return false
			}
		}
		d.i += 6
		return true
	}
	return false
}

// view returns b[from:to] as a string without copying.
func (d *claimsDecoder) view(from, to int) string {
	if from == to {
		return ""
	}
	return unsafe.String(&d.b[from], to-from)
}
