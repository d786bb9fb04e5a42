package identity

import (
	"fmt"
	"slices"
	"strings"
)

const maxSPIFFEIDBytes = 2048

// FromSPIFFE builds the Principal of an mTLS caller from its SPIFFE id
// ("spiffe://trust-domain/path"), as taken from a verified peer certificate
// (Envoy has already checked the certificate chain). The id must be well
// formed per the SPIFFE ID spec, name a workload (non-empty path), and
// belong to a configured trust domain. The Principal has Kind agent and
// Method mtls.
func (v *Verifier) FromSPIFFE(id string) (*Principal, error) {
	td, err := parseSPIFFEID(id)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(v.cfg.SPIFFE.TrustDomains, td) {
		return nil, tokenErr(ReasonUntrustedDomain, "")
	}
	org := v.cfg.SPIFFE.Org
	return &Principal{
		Kind:             KindAgent,
		Method:           "mtls",
		Subject:          id,
		QualifiedSubject: id, // globally unique by construction
		UserID:           id,
		Org:              org,
		UserKey:          UserKey(spiffeNamespace, org, id),
		Issuer:           "spiffe://" + td,
		SPIFFEID:         id,
	}, nil
}

// parseSPIFFEID validates id and returns its trust domain.
func parseSPIFFEID(id string) (string, error) {
	bad := func(why string) error { return tokenErr(ReasonInvalidSPIFFEID, why) }
	if len(id) > maxSPIFFEIDBytes {
		return "", bad("too long")
	}
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return "", bad("scheme must be spiffe://")
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := checkTrustDomain(td); err != nil {
		return "", bad(err.Error())
	}
	if path == "" {
		return "", bad("workload path required")
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			return "", bad("empty path segment")
		case ".", "..":
			return "", bad("dot path segment")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return "", bad("invalid path character")
			}
		}
	}
	return td, nil
}

// checkTrustDomain enforces the SPIFFE trust-domain charset: lowercase
// letters, digits, '-', '.', '_'.
func checkTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain required")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain too long")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("invalid trust domain character %q", c)
		}
	}
	return nil
}
