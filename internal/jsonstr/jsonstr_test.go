package jsonstr

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHex4(t *testing.T) {
	tests := []struct {
		in   string
		want rune
		ok   bool
	}{
		{"0000", 0, true},
		{"00e9", 0xe9, true},
		{"D83D", 0xD83D, true},
		{"dE0aXYZ", 0xDE0A, true}, // only the first four count
		{"FFFF", 0xFFFF, true},
		{"12", 0, false},
		{"", 0, false},
		{"12g4", 0, false},
		{"+123", 0, false},
		{" 123", 0, false},
	}
	for _, tt := range tests {
		r, ok := Hex4([]byte(tt.in))
		if r != tt.want || ok != tt.ok {
			t.Errorf("Hex4(%q) = %#x, %v; want %#x, %v", tt.in, r, ok, tt.want, tt.ok)
		}
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		in   string // contents, without quotes
		want string
		ok   bool
	}{
		{name: "empty", in: "", want: "", ok: true},
		{name: "plain", in: "tools/call", want: "tools/call", ok: true},
		{name: "utf-8 kept", in: "héllo ✓", want: "héllo ✓", ok: true},
		{name: "short escapes", in: `\"\\\/\b\f\n\r\t`, want: "\"\\/\b\f\n\r\t", ok: true},
		{name: "escape between runs", in: `a\nb\tc`, want: "a\nb\tc", ok: true},
		{name: "u escape", in: `caf\u00e9`, want: "café", ok: true},
		{name: "u escape upper", in: `\u00C9T\u00c9`, want: "ÉTÉ", ok: true},
		{name: "u escape nul", in: `a\u0000b`, want: "a\x00b", ok: true},
		{name: "surrogate pair", in: `\ud83d\ude00!`, want: "😀!", ok: true},
		{name: "escaped key name", in: `n\u0061me`, want: "name", ok: true},
		{name: "lone high at end", in: `\ud83d`, ok: false},
		{name: "lone high then text", in: `\ud83dabcdef`, ok: false},
		{name: "high then non-surrogate", in: `\ud83d\u0041`, ok: false},
		{name: "high then high", in: `\ud83d\ud83d`, ok: false},
		{name: "lone low", in: `\ude00`, ok: false},
		{name: "high then short escape", in: `\ud83d\n12345`, ok: false},
		{name: "high then bad hex", in: `\ud83d\udxyz`, ok: false},
		{name: "trailing backslash", in: `abc\`, ok: false},
		{name: "unknown escape", in: `\x41`, ok: false},
		{name: "short u", in: `\u12`, ok: false},
		{name: "bad hex", in: `\u12G4`, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix:")
			got, ok := Append(prefix, []byte(tt.in))
			if ok != tt.ok {
				t.Fatalf("Append(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if !ok {
				if string(got) != "prefix:" {
					t.Fatalf("failed Append changed out to %q", got)
				}
				return
			}
			if string(got) != "prefix:"+tt.want {
				t.Fatalf("Append(%q) = %q, want %q", tt.in, got[len("prefix:"):], tt.want)
			}
			// The same answer as encoding/json.
			var std string
			if err := json.Unmarshal([]byte(`"`+tt.in+`"`), &std); err != nil || std != tt.want {
				t.Fatalf("encoding/json: %q, %v; Append: %q", std, err, tt.want)
			}
		})
	}
}

// FuzzAppend holds Append to encoding/json: whatever Append decodes,
// encoding/json decodes the same way.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{``, `abc`, `\n\u00e9`, `\ud83d\ude00`, `\ud83d`, `\`, `\u12`, `"`, "\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Append(nil, []byte(s))
		if !ok {
			return
		}
		// encoding/json also checks what Append leaves to the scanner.
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) || hasBareQuote(s) {
			return
		}
		var std string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &std); err != nil {
			t.Fatalf("Append(%q) = %q, encoding/json refuses: %v", s, got, err)
		}
		if std != string(got) {
			t.Fatalf("Append(%q) = %q, encoding/json %q", s, got, std)
		}
	})
}

// hasBareQuote reports an unescaped '"' in s, whose escapes are well formed.
func hasBareQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return true
		}
	}
	return false
}

func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"plain", strings.Repeat("abcdefgh", 16)},
		{"escaped", strings.Repeat(`ab\ncd\u00e9\ud83d\ude00`, 8)},
		{"dense", strings.Repeat(`\n\t\"\u00e9`, 16)},
		{"key", `n\u0061me`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.in)
			out := make([]byte, 0, 2*len(in))
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				out, _ = Append(out[:0], in)
			}
		})
	}
}
