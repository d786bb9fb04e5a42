package policy

import (
	"errors"
	"fmt"
	"os"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// maxKeyFileBytes bounds a public key file.
const maxKeyFileBytes = 1 << 20

// verificationConfig turns a Signing block into OPA's bundle verification
// configuration, reading key files now (a rotated key file takes effect on
// restart). It returns nil for a nil Signing.
func verificationConfig(s *Signing) (*bundle.VerificationConfig, error) {
	if s == nil {
		return nil, nil
	}
	keys := make(map[string]*bundle.KeyConfig, len(s.Keys))
	for _, k := range s.Keys {
		pemText := k.PublicKey.PEM
		if k.PublicKey.File != "" {
			info, err := os.Stat(k.PublicKey.File)
			if err != nil {
				return nil, fmt.Errorf("signing key %q: %w", k.ID, err)
			}
			if info.Size() > maxKeyFileBytes {
				return nil, fmt.Errorf("signing key %q: %s is larger than %d bytes", k.ID, k.PublicKey.File, maxKeyFileBytes)
			}
			b, err := os.ReadFile(k.PublicKey.File)
			if err != nil {
				return nil, fmt.Errorf("signing key %q: %w", k.ID, err)
			}
			pemText = string(b)
		}
		if _, err := ParsePublicKey([]byte(pemText)); err != nil {
			return nil, fmt.Errorf("signing key %q: %w", k.ID, err)
		}
		alg := k.Algorithm
		if alg == "" {
			alg = "RS256"
		}
		keys[k.ID] = &bundle.KeyConfig{Key: pemText, Algorithm: alg}
	}
	return bundle.NewVerificationConfig(keys, s.KeyID, s.Scope, append([]string(nil), s.ExcludeFiles...)), nil
}

// verifyFiles checks the bundle signature over all files of a bundle (as
// read, .signatures.json included) with OPA's bundle reader: the JWT in
// .signatures.json must verify with a configured key and carry the
// configured scope, every file (except exclude_files) must be listed with a
// matching digest, and every listed file must be present. A bundle without
// .signatures.json is refused.
func verifyFiles(files []rawFile, vc *bundle.VerificationConfig) error {
	// No base dir: descriptor paths are then bundle-relative, as in the
	// signature's file list.
	_, err := bundle.NewCustomReader(&memLoader{files: files}).
		WithRegoVersion(ast.RegoV1).
		WithBundleVerificationConfig(vc).
		WithSizeLimitBytes(maxFileBytes + 1).
		Read()
	var parseErrs ast.Errors
	switch {
	case err == nil:
		return nil
	case errors.As(err, &parseErrs):
		// The reader checks every file's digest before it parses modules,
		// so the signed content itself does not parse: report that as is.
		return err
	}
	return fmt.Errorf("signature verification failed: %w", err)
}
