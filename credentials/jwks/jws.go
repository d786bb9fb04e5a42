package jwks

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"
)

// asymmetric lists the JWS algorithms this package verifies.
var asymmetric = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// Asymmetric reports whether alg is a JWS algorithm this package verifies
// (RS*, PS*, ES*, EdDSA). "none" and HMAC are not.
func Asymmetric(alg string) bool { return slices.Contains(asymmetric, alg) }

// Algorithms returns the asymmetric JWS algorithms this package verifies.
func Algorithms() []string { return slices.Clone(asymmetric) }

// b64 decodes base64url without padding, refusing non-canonical trailing
// bits. Parse has already refused every byte outside the alphabet
// (including '=', CR and LF, which the decoder would skip).
var b64 = base64.RawURLEncoding.Strict()

// Header is the part of a JOSE header the verifiers read.
type Header struct {
	Alg string
	Kid string
	Typ string
}

// JWS is a compact JWS split once.
type JWS struct {
	Header Header
	// SigningInput is "header.payload", the bytes the signature covers.
	SigningInput string
	// Payload is the second segment, still base64url encoded.
	Payload string
	// Signature is the decoded third segment.
	Signature []byte
}

// Parse splits a compact JWS (RFC 7515 section 7.1) and decodes its header
// and signature. It refuses (ErrMalformed): anything but three segments of
// base64url characters without padding (header and payload non-empty; an
// empty signature, as alg "none" has, is left to the alg check), non-canonical
// base64url, a header that is not one JSON object, a header naming crit
// (no extension is understood) or b64 other than true, and a duplicated or
// non-string alg, kid or typ. jku, x5u, jwk and x5c are ignored: keys come
// from the KeySet only. The alg is not checked here. Errors never quote raw.
func Parse(raw string) (JWS, error) {
	dots := 0
	for i := 0; i < len(raw); i++ {
		switch b64Class[raw[i]] {
		case classDot:
			dots++
		case classOther:
			return JWS{}, fmt.Errorf("%w: character outside base64url", ErrMalformed)
		}
	}
	if dots != 2 {
		return JWS{}, fmt.Errorf("%w: not three segments", ErrMalformed)
	}
	h, rest, _ := strings.Cut(raw, ".")
	p, s, _ := strings.Cut(rest, ".")
	if h == "" || p == "" {
		return JWS{}, fmt.Errorf("%w: empty header or payload", ErrMalformed)
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return JWS{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	hdr, err := parseHeader(hb)
	if err != nil {
		return JWS{}, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	sig, err := b64.DecodeString(s)
	if err != nil {
		return JWS{}, fmt.Errorf("%w: signature: %w", ErrMalformed, err)
	}
	return JWS{Header: hdr, SigningInput: raw[:len(h)+1+len(p)], Payload: p, Signature: sig}, nil
}

// DecodePayload decodes the payload segment, whose characters Parse has
// checked.
func (j *JWS) DecodePayload() ([]byte, error) {
	b, err := b64.DecodeString(j.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	return b, nil
}

// Character classes of a compact JWS.
const (
	classOther = iota
	classB64
	classDot
)

var b64Class = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			t[c] = classB64
		case c == '.':
			t[c] = classDot
		}
	}
	return t
}()

// DecodeSegment decodes one base64url segment strictly (no padding, no
// line breaks, canonical trailing bits).
func DecodeSegment(seg string) ([]byte, error) {
	for i := 0; i < len(seg); i++ {
		if b64Class[seg[i]] != classB64 {
			return nil, errors.New("not unpadded base64url")
		}
	}
	return b64.DecodeString(seg)
}

// parseHeader reads alg, kid and typ from a JOSE header without building
// a map: the header is checked to be valid JSON first, then its top-level
// members are scanned.
func parseHeader(b []byte) (Header, error) {
	var h Header
	if !json.Valid(b) {
		return h, errors.New("not JSON")
	}
	sc := scanner{b: b}
	sc.ws()
	if !sc.eat('{') {
		return h, errors.New("not a JSON object")
	}
	var seen [3]bool
	for first := true; ; first = false {
		sc.ws()
		if sc.eat('}') {
			break
		}
		if !first && !sc.eat(',') {
			return h, errors.New("not a JSON object") // unreachable for valid JSON
		}
		sc.ws()
		name, err := sc.str()
		if err != nil {
			return h, err
		}
		sc.ws()
		sc.eat(':')
		sc.ws()
		var dst *string
		var i int
		switch name {
		case "alg":
			dst, i = &h.Alg, 0
		case "kid":
			dst, i = &h.Kid, 1
		case "typ":
			dst, i = &h.Typ, 2
		case "crit":
			return h, errors.New("crit is not supported")
		case "b64":
			if !sc.literal("true") {
				return h, errors.New("b64 other than true is not supported")
			}
			continue
		default:
			sc.skip()
			continue
		}
		if seen[i] {
			return h, errors.New("duplicate " + name)
		}
		seen[i] = true
		if sc.peek() != '"' {
			return h, errors.New(name + " is not a string")
		}
		if *dst, err = sc.str(); err != nil {
			return h, err
		}
	}
	sc.ws()
	if sc.i != len(sc.b) {
		return h, errors.New("data after the JSON object") // unreachable for valid JSON
	}
	return h, nil
}

// scanner walks JSON already known to be valid.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) eat(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		s.i += len(lit)
		return true
	}
	return false
}

// str reads a JSON string. One holding escapes or non-ASCII bytes is
// decoded by encoding/json, so it reads exactly as encoding/json reads it
// (invalid UTF-8 becomes U+FFFD).
func (s *scanner) str() (string, error) {
	if !s.eat('"') {
		return "", errors.New("expected a string")
	}
	start, esc := s.i, false
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '\\':
			esc = true
			s.i += 2
			continue
		case c >= 0x80:
			esc = true
		case c == '"':
			raw := s.b[start:s.i]
			s.i++
			if !esc {
				if len(raw) == 0 {
					return "", nil
				}
				// No copy: the header buffer is Parse's own and never
				// modified.
				return unsafe.String(&raw[0], len(raw)), nil
			}
			var out string
			if err := json.Unmarshal(s.b[start-1:s.i], &out); err != nil {
				return "", err
			}
			return out, nil
		}
		s.i++
	}
	return "", errors.New("unterminated string")
}

// skip passes one JSON value.
func (s *scanner) skip() {
	depth := 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case '"':
			_, _ = s.str()
			if depth == 0 {
				return
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return
			}
			depth--
			if depth == 0 {
				s.i++
				return
			}
		case ',':
			if depth == 0 {
				return
			}
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				return
			}
		}
		s.i++
	}
}

// VerifyWithKey checks sig over signingInput with key for alg, one of the
// asymmetric algorithms. The key's type must fit alg (RSA for RS*/PS*, the
// curve named by alg for ES*, Ed25519 for EdDSA); an ECDSA signature must
// be r||s of exactly twice the curve's byte length. It returns nil or an
// error wrapping ErrBadSignature (ErrAlgNotAllowed for an alg it does not
// verify).
func VerifyWithKey(key *jose.JSONWebKey, alg, signingInput string, sig []byte) error {
	msg := unsafe.Slice(unsafe.StringData(signingInput), len(signingInput))
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pub, ok := key.Key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an RSA key", ErrBadSignature, alg)
		}
		h, digest := hashOf(alg[2:], msg)
		var err error
		if alg[0] == 'R' {
			err = rsa.VerifyPKCS1v15(pub, h, digest, sig)
		} else {
			err = rsa.VerifyPSS(pub, h, digest, sig, nil)
		}
		if err != nil {
			return ErrBadSignature
		}
		return nil
	case "ES256", "ES384", "ES512":
		pub, ok := key.Key.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an ECDSA key", ErrBadSignature, alg)
		}
		curve, size := elliptic.P256(), 32
		switch alg {
		case "ES384":
			curve, size = elliptic.P384(), 48
		case "ES512":
			curve, size = elliptic.P521(), 66
		}
		if pub.Curve != curve {
			return fmt.Errorf("%w: %s needs curve %s", ErrBadSignature, alg, curve.Params().Name)
		}
		if len(sig) != 2*size {
			return fmt.Errorf("%w: %s signature must be %d bytes", ErrBadSignature, alg, 2*size)
		}
		_, digest := hashOf(alg[2:], msg)
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return ErrBadSignature
		}
		return nil
	case "EdDSA":
		pub, ok := key.Key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: EdDSA needs an Ed25519 key", ErrBadSignature)
		}
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, sig) {
			return ErrBadSignature
		}
		return nil
	}
	return fmt.Errorf("%w: %q", ErrAlgNotAllowed, alg)
}

func hashOf(bits string, msg []byte) (crypto.Hash, []byte) {
	switch bits {
	case "384":
		d := sha512.Sum384(msg)
		return crypto.SHA384, d[:]
	case "512":
		d := sha512.Sum512(msg)
		return crypto.SHA512, d[:]
	}
	d := sha256.Sum256(msg)
	return crypto.SHA256, d[:]
}

// Verify checks j's signature with the set's keys for its kid and alg:
// the alg must be in the allow-list, then each candidate key is tried.
// Errors wrap ErrAlgNotAllowed, ErrUnknownKid, ErrUnavailable or
// ErrBadSignature.
func (k *KeySet) Verify(ctx context.Context, j *JWS) error {
	if !slices.Contains(k.algs, j.Header.Alg) {
		return ErrAlgNotAllowed
	}
	keys, err := k.Keys(ctx, j.Header.Kid, j.Header.Alg)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if VerifyWithKey(key, j.Header.Alg, j.SigningInput, j.Signature) == nil {
			return nil
		}
	}
	return ErrBadSignature
}

// VerifySignature implements go-oidc's oidc.KeySet: it parses raw once,
// verifies its signature (Verify) and returns the decoded payload.
func (k *KeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	j, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	if err := k.Verify(ctx, &j); err != nil {
		return nil, err
	}
	return j.DecodePayload()
}

// NumericDate converts a JSON NumericDate (RFC 7519: seconds since the
// epoch, possibly fractional) decoded as json.Number or float64. Negative
// values, values past the year 5138 and anything else are refused.
func NumericDate(v any) (time.Time, bool) {
	var f float64
	switch t := v.(type) {
	case float64:
		f = t
	case json.Number:
		var err error
		if f, err = strconv.ParseFloat(string(t), 64); err != nil {
			return time.Time{}, false
		}
	default:
		return time.Time{}, false
	}
	if !(f >= 0 && f <= 1e11) {
		return time.Time{}, false
	}
	sec := int64(f)
	nsec := int64((f - float64(sec)) * 1e9)
	return time.Unix(sec, nsec), true
}
