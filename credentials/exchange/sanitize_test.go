package exchange

import (
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in string
		secrets  []string
		want     string
	}{
		{"plain", "audience not allowed", nil, "audience not allowed"},
		{"secret", "bad secret s3cr3t-value here", []string{"s3cr3t-value"}, "bad secret [redacted] here"},
		{"jwt", "token aaa.bbb.ccc rejected", nil, "token [redacted] rejected"},
		{"long run", "id " + strings.Repeat("A", 40), nil, "id [redacted]"},
		{"controls and quotes dropped", "a\"b\\c\nd\x00e", nil, "abcde"},
		{"secret split by control", "x s3cr\n3t-value y", []string{"s3cr3t-value"}, "x [redacted] y"},
		{"truncated", strings.Repeat("word ", 50), nil, strings.Repeat("word ", 32) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitize(tt.in, tt.secrets...); got != tt.want {
				t.Fatalf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzSanitize checks that a secret embedded in a description never
// survives and the result stays within the RFC 6749 character set and size.
func FuzzSanitize(f *testing.F) {
	f.Add("prefix ", "s3cr3t-value", " suffix")
	f.Add("", "eyJhbGciOi.eyJzdWIi.sig", "")
	f.Add("\"\\", "abcd", "\x7f\n")
	f.Fuzz(func(t *testing.T, pre, sec, post string) {
		if len(sec) < 4 {
			return
		}
		out := sanitize(pre+sec+post, sec)
		if len(out) > maxDescription+3 {
			t.Fatalf("output too long: %d", len(out))
		}
		for _, r := range out {
			if r < 0x20 || r == '"' || r == '\\' || r > 0x7e {
				t.Fatalf("disallowed character %q in %q", r, out)
			}
		}
		clean := strings.Map(func(r rune) rune {
			if r < 0x20 || r == '"' || r == '\\' || r > 0x7e {
				return -1
			}
			return r
		}, sec)
		if len(clean) >= 4 && strings.Contains(out, clean) && !strings.Contains(strings.Map(func(r rune) rune {
			if r < 0x20 || r == '"' || r == '\\' || r > 0x7e {
				return -1
			}
			return r
		}, pre+post), clean) {
			t.Fatalf("secret %q survived in %q", clean, out)
		}
	})
}
