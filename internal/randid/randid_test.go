package randid

import (
	"encoding/hex"
	"testing"
)

func TestHex(t *testing.T) {
	for _, n := range []int{0, 1, 4, 16, 32} {
		s := Hex(n)
		if len(s) != 2*n {
			t.Fatalf("Hex(%d) = %q: %d characters, want %d", n, s, len(s), 2*n)
		}
		if _, err := hex.DecodeString(s); err != nil {
			t.Fatalf("Hex(%d) = %q: not hex: %v", n, s, err)
		}
	}
	seen := map[string]bool{}
	for range 1000 {
		s := Hex(8)
		if seen[s] {
			t.Fatalf("Hex(8) repeated %q", s)
		}
		seen[s] = true
	}
}
