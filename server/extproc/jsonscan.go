package extproc

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/mcpauthz/mcpauthz/internal/jsonstr"
)

// A strict JSON scanner that works on raw bytes: it validates (RFC 8259,
// UTF-8, no trailing data) and reports byte spans, so the list filter can
// drop array elements without re-encoding anything else.

var (
	errSyntax = errors.New("invalid JSON")
	errDepth  = errors.New("JSON nested too deeply")
)

const maxJSONDepth = 256

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// scanValue validates the value starting at b[i] and returns the index just
// past it. depth counts the containers around it.
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch c := b[i]; {
	case c == '{':
		return members(b, i, depth, nil)
	case c == '[':
		return elements(b, i, depth, nil)
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == 't':
		return scanLit(b, i, "true")
	case c == 'f':
		return scanLit(b, i, "false")
	case c == 'n':
		return scanLit(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	}
	return 0, errSyntax
}

// memberFunc sees one object member: the key's raw span (quotes included)
// and where its value starts; it returns where the value ends (scanning it,
// usually with scanValue).
type memberFunc func(k0, k1, v0 int) (int, error)

// members scans the object at b[i] ('{'), calling fn (nil: just validate)
// for each member, and returns the index past '}'.
func members(b []byte, i, depth int, fn memberFunc) (int, error) {
	if depth >= maxJSONDepth {
		return 0, errDepth
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errSyntax
		}
		k0 := i
		k1, _, err := scanString(b, i)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, k1)
		if i >= len(b) || b[i] != ':' {
			return 0, errSyntax
		}
		v0 := skipWS(b, i+1)
		if fn != nil {
			i, err = fn(k0, k1, v0)
		} else {
			i, err = scanValue(b, v0, depth+1)
		}
		if err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errSyntax
		}
	}
}

// elements scans the array at b[i] ('['), calling fn (nil: just validate)
// with where each element starts; fn returns where it ends.
func elements(b []byte, i, depth int, fn func(v0 int) (int, error)) (int, error) {
	if depth >= maxJSONDepth {
		return 0, errDepth
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if fn != nil {
			i, err = fn(i)
		} else {
			i, err = scanValue(b, i, depth+1)
		}
		if err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1, nil
		default:
			return 0, errSyntax
		}
	}
}

// plainString marks bytes a string may hold as they are: printable ASCII
// other than '"' and '\\'.
var plainString = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string at b[i] ('"'): escapes, no control
// characters, valid UTF-8. esc reports a backslash inside.
func scanString(b []byte, i int) (end int, esc bool, err error) {
	j := i + 1
	for {
		for j < len(b) && plainString[b[j]] {
			j++
		}
		if j >= len(b) {
			return 0, esc, errSyntax
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, esc, nil
		case c == '\\':
			esc = true
			if j+1 >= len(b) {
				return 0, esc, errSyntax
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if _, ok := jsonstr.Hex4(b[j+2:]); !ok {
					return 0, esc, errSyntax
				}
				j += 6
			default:
				return 0, esc, errSyntax
			}
		case c < 0x20:
			return 0, esc, errSyntax
		default:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n <= 1 {
				return 0, esc, errSyntax
			}
			j += n
		}
	}
}

func scanLit(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, errSyntax
	}
	return i + len(lit), nil
}

func scanNumber(b []byte, i int) (int, error) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	digits := func() int {
		s := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j - s
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case digits() == 0:
		return 0, errSyntax
	}
	if j < len(b) && b[j] == '.' {
		j++
		if digits() == 0 {
			return 0, errSyntax
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return 0, errSyntax
		}
	}
	return j, nil
}

// decodeString decodes a string span (quotes included) that scanString
// accepted. ok is false for a lone UTF-16 surrogate, which decoders
// disagree about.
func decodeString(raw []byte) (string, bool) {
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') < 0 {
		return string(in), true
	}
	out, ok := jsonstr.Append(make([]byte, 0, len(in)), in)
	if !ok {
		return "", false
	}
	return string(out), true
}

// keyMatch compares an object key span (quotes included) with want:
// exact is byte equality of the decoded key, fold is equality under
// Unicode simple case folding (how Go's encoding/json matches fields),
// which exact implies.
func keyMatch(raw []byte, want string) (exact, fold bool) {
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') >= 0 {
		k, ok := decodeString(raw)
		if !ok {
			return false, false
		}
		in = []byte(k)
	}
	if string(in) == want {
		return true, true
	}
	return false, bytes.EqualFold(in, []byte(want))
}
