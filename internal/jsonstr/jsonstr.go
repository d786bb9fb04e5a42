// Package jsonstr decodes the contents of JSON strings for mcpauthz's two
// hand-written JSON scanners, the MCP request parser (server/mcp) and the
// ext_proc body filter (server/extproc). Each scanner checks a string's
// syntax its own way first; this package holds the decoding they share.
package jsonstr

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// Hex4 returns the value of the four hexadecimal digits that start b (the
// digits of a \u escape), and false when b is shorter than four bytes or
// one of them is not a hexadecimal digit.
func Hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// Append appends to out the decoded contents s (without the quotes) of a
// JSON string and reports whether s decoded. It fails, returning out
// unchanged and false, on a malformed escape (anything but \" \\ \/ \b \f
// \n \r \t or \u with four hexadecimal digits) and on a UTF-16 surrogate
// escape that is not a high surrogate followed by a low one: decoders
// disagree about a lone surrogate (encoding/json makes it U+FFFD), so it
// never decodes. Bytes other than escapes are copied as they are; checking
// them (control characters, UTF-8) is the scanner's part.
func Append(out, s []byte) ([]byte, bool) {
	n := len(out)
	for len(s) > 0 {
		if s[0] != '\\' {
			// Copy the run up to the next escape. Runs between escapes are
			// mostly short: look at a few bytes before calling IndexByte.
			k := 1
			for k < len(s) && k < 16 && s[k] != '\\' {
				k++
			}
			if k == 16 {
				if m := bytes.IndexByte(s[k:], '\\'); m < 0 {
					k = len(s)
				} else {
					k += m
				}
			}
			out = append(out, s[:k]...)
			if s = s[k:]; len(s) == 0 {
				break
			}
		}
		if len(s) < 2 {
			return out[:n], false
		}
		switch s[1] {
		case '"', '\\', '/':
			out = append(out, s[1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := Hex4(s[2:])
			if !ok {
				return out[:n], false
			}
			s = s[6:]
			if utf16.IsSurrogate(r) {
				if r >= 0xDC00 || len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
					return out[:n], false
				}
				r2, ok := Hex4(s[2:])
				if !ok {
					return out[:n], false
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return out[:n], false
				}
				s = s[6:]
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return out[:n], false
		}
		s = s[2:]
	}
	return out, true
}
