package store

import (
	"crypto/aes"
	"crypto/cipher"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

// Cipher seals values before they reach a Store. aad (associated data)
// binds a ciphertext to its context, typically the record key: Decrypt with
// any other aad fails. *KeyRing implements it.
type Cipher interface {
	Encrypt(plaintext, aad []byte) ([]byte, error)
	Decrypt(ciphertext, aad []byte) ([]byte, error)
}

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

// maxKeyIDLen bounds a key id (it is stored in every ciphertext).
const maxKeyIDLen = 64

// envelopeVersion is the first byte of every ciphertext.
const envelopeVersion = 1

// KeyRing is an AES-256-GCM cipher with several keys, each with an id.
// Encrypt seals with the primary key; Decrypt opens with whichever listed
// key the ciphertext names, so keys rotate without downtime: add the new
// key, make it primary, re-encrypt, then drop the old one.
//
// A ciphertext is the envelope
//
//	0x01 | len(id) | id | nonce (12 random bytes) | AES-GCM ciphertext and tag
//
// and GCM authenticates the envelope header (version and key id) together
// with the caller's aad, so neither the key id nor the record binding can
// be altered. Nonces are random (crypto/rand), which bounds a key to about
// 2^32 encryptions: rotate long before that.
//
// A KeyRing is immutable and safe for concurrent use. Key bytes are never
// kept outside the AES key schedule and never printed: String, GoString,
// Format and LogValue show ids only.
type KeyRing struct {
	primary   string
	keys      map[string]cipher.AEAD
	ephemeral bool
}

var (
	_ Cipher         = (*KeyRing)(nil)
	_ slog.LogValuer = (*KeyRing)(nil)
	_ fmt.Formatter  = (*KeyRing)(nil)
)

// NewKeyRing builds a key ring from keys (id -> 32 key bytes); primary
// names the key that encrypts. It copies nothing it does not need: the key
// bytes go into the AES key schedule only (the caller may clear them).
func NewKeyRing(primary string, keys map[string][]byte) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("store: key ring: no keys")
	}
	r := &KeyRing{primary: primary, keys: make(map[string]cipher.AEAD, len(keys))}
	for id, k := range keys {
		if err := checkKeyID(id); err != nil {
			return nil, fmt.Errorf("store: key ring: %w", err)
		}
		if err := checkKeyBytes(k); err != nil {
			return nil, fmt.Errorf("store: key ring: key %q: %w", id, err)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("store: key ring: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("store: key ring: key %q: %w", id, err)
		}
		r.keys[id] = aead
	}
	if _, ok := r.keys[primary]; !ok {
		return nil, fmt.Errorf("store: key ring: primary key %q is not one of the keys", primary)
	}
	return r, nil
}

// NewRandomKeyRing returns a key ring with one random key (crypto/rand)
// that lives only in this process: whatever it encrypts is unreadable after
// a restart and to every other replica. For the memory store only.
func NewRandomKeyRing() (*KeyRing, error) {
	k := make([]byte, KeySize)
	defer clear(k)
	if _, err := io.ReadFull(crand.Reader, k); err != nil {
		return nil, fmt.Errorf("store: key ring: random key: %w", err)
	}
	r, err := NewKeyRing("ephemeral", map[string][]byte{"ephemeral": k})
	if err != nil {
		return nil, err
	}
	r.ephemeral = true
	return r, nil
}

// Primary returns the id of the key that encrypts.
func (r *KeyRing) Primary() string { return r.primary }

// KeyIDs returns the ids of every key, sorted.
func (r *KeyRing) KeyIDs() []string {
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Ephemeral reports whether the ring is a random per-process key.
func (r *KeyRing) Ephemeral() bool { return r.ephemeral }

// Encrypt seals plaintext with the primary key, bound to aad.
func (r *KeyRing) Encrypt(plaintext, aad []byte) ([]byte, error) {
	aead := r.keys[r.primary]
	hdr := header(r.primary)
	out := make([]byte, len(hdr), len(hdr)+aead.Overhead()+len(plaintext))
	copy(out, hdr)
	return aead.Seal(out, nil, plaintext, joinAAD(hdr, aad)), nil
}

// Decrypt opens a ciphertext made by Encrypt with the same aad, under
// whichever key of the ring it names. Every failure wraps ErrDecrypt.
func (r *KeyRing) Decrypt(ciphertext, aad []byte) ([]byte, error) {
	id, rest, err := parseEnvelope(ciphertext)
	if err != nil {
		return nil, err
	}
	aead, ok := r.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w: sealed with key %q, which is not in the key ring", ErrDecrypt, id)
	}
	hdr := ciphertext[:len(ciphertext)-len(rest)]
	pt, err := aead.Open(nil, nil, rest, joinAAD(hdr, aad))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed (tampered, or bound to another record)", ErrDecrypt)
	}
	return pt, nil
}

// KeyID returns the id of the key a ciphertext was sealed with, without
// decrypting it (to find records that still need re-encryption after a
// rotation).
func KeyID(ciphertext []byte) (string, error) {
	id, _, err := parseEnvelope(ciphertext)
	return id, err
}

func header(id string) []byte { return append([]byte{envelopeVersion, byte(len(id))}, id...) }

// joinAAD makes the GCM associated data: the self-delimiting envelope
// header, then the caller's aad.
func joinAAD(hdr, aad []byte) []byte {
	out := make([]byte, 0, len(hdr)+len(aad))
	return append(append(out, hdr...), aad...)
}

func parseEnvelope(c []byte) (id string, rest []byte, err error) {
	if len(c) < 2 || c[0] != envelopeVersion {
		return "", nil, fmt.Errorf("%w: not a sealed value (unknown envelope)", ErrDecrypt)
	}
	n := int(c[1])
	if n == 0 || len(c) < 2+n {
		return "", nil, fmt.Errorf("%w: truncated envelope", ErrDecrypt)
	}
	id = string(c[2 : 2+n])
	if checkKeyID(id) != nil {
		return "", nil, fmt.Errorf("%w: malformed key id", ErrDecrypt)
	}
	return id, c[2+n:], nil
}

// checkKeyID: 1 to 64 of A-Z a-z 0-9 . _ -
func checkKeyID(id string) error {
	if id == "" || len(id) > maxKeyIDLen {
		return fmt.Errorf("key id must be 1 to %d characters", maxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return errors.New("key id must use only A-Z a-z 0-9 . _ -")
		}
	}
	return nil
}

// checkKeyBytes refuses keys of the wrong size or obviously not random.
func checkKeyBytes(k []byte) error {
	if len(k) != KeySize {
		return fmt.Errorf("must be exactly %d bytes, got %d", KeySize, len(k))
	}
	var seen [256]bool
	distinct := 0
	for _, b := range k {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < 8 {
		return errors.New("does not look random (fewer than 8 distinct bytes); generate one with `openssl rand -base64 32`")
	}
	return nil
}

// decodeKey decodes the base64 text of a key (standard or URL alphabet,
// padded or not). The error never contains the text.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if err := checkKeyBytes(b); err != nil {
				clear(b)
				return nil, err
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("must be the base64 of exactly %d random bytes (e.g. `openssl rand -base64 32`)", KeySize)
}

// String describes the ring by key ids only.
func (r *KeyRing) String() string {
	if r == nil {
		return "store.KeyRing(nil)"
	}
	return fmt.Sprintf("store.KeyRing{primary: %s, keys: [%s], ephemeral: %t}", r.primary, strings.Join(r.KeyIDs(), " "), r.ephemeral)
}

// GoString is String: %#v must not dump the key schedules.
func (r *KeyRing) GoString() string { return r.String() }

// Format prints String for every verb.
func (r *KeyRing) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, r.String()) }

// LogValue logs key ids only.
func (r *KeyRing) LogValue() slog.Value {
	return slog.GroupValue(slog.String("primary", r.primary), slog.Any("keys", r.KeyIDs()), slog.Bool("ephemeral", r.ephemeral))
}
