// Package randid makes random identifiers from crypto/rand: key ids, token
// ids (jti), client ids, throwaway database names and passwords.
package randid

import (
	"crypto/rand"
	"encoding/hex"
)

// Hex returns n random bytes, hex-encoded (2n characters).
func Hex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand.Read crashes the program instead)
	return hex.EncodeToString(b)
}
