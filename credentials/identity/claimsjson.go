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
// validates the whole input with json.Valid first and then walks it
// without re-checking the grammar. Strings without escapes that are valid
// UTF-8 are not copied: they point into b, which the caller hands over and
// must never modify.

// maxClaimsDepth matches encoding/json's nesting limit.
const maxClaimsDepth = 10000

var errNotObject = errors.New("identity: claims are not a JSON object")

func decodeClaimsOwned(b []byte) (map[string]any, error) {
	i := skipWS(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil, errNotObject
	}
	if !json.Valid(b) {
		// Let encoding/json describe the problem.
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, errors.New("identity: claims: " + err.Error())
		}
		return nil, errors.New("identity: claims: invalid JSON")
	}
	d := claimsDecoder{b: b, i: i}
	m, err := d.object(0)
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
	d.ws()
	if d.b[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		d.ws()
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.ws()
		d.i++ // ':'
		d.ws()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.ws()
		c := d.b[d.i]
		d.i++
		if c == '}' {
			return m, nil
		}
		// c == ','
	}
}

func (d *claimsDecoder) array(depth int) ([]any, error) {
	if depth >= maxClaimsDepth {
		return nil, errors.New("identity: claims: nested too deeply")
	}
	d.i++ // '['
	out := []any{}
	d.ws()
	if d.b[d.i] == ']' {
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
		d.ws()
		c := d.b[d.i]
		d.i++
		if c == ']' {
			return out, nil
		}
	}
}

func (d *claimsDecoder) value(depth int) (any, error) {
	switch c := d.b[d.i]; c {
	case '{':
		return d.object(depth)
	case '[':
		return d.array(depth)
	case '"':
		return d.str()
	case 't':
		d.i += 4
		return true, nil
	case 'f':
		d.i += 5
		return false, nil
	case 'n':
		d.i += 4
		return nil, nil
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			break
		}
		d.i++
	}
	return json.Number(d.view(start, d.i)), nil
}

// str decodes the string at d.i (a '"').
func (d *claimsDecoder) str() (string, error) {
	start := d.i
	d.i++
	plain := true
	for {
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
		case c == '\\':
			plain = false
			d.i += 2
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
}

// view returns b[from:to] as a string without copying.
func (d *claimsDecoder) view(from, to int) string {
	if from == to {
		return ""
	}
	return unsafe.String(&d.b[from], to-from)
}
