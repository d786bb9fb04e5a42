package outbound

import (
	"context"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

// staticProvider returns one pre-built credential. Safe for concurrent use.
type staticProvider struct{ cred *Credential }

var _ Provider = staticProvider{}

// String describes the provider by mode and header names.
func (p staticProvider) String() string { return "outbound.Provider{" + p.cred.String() + "}" }

// Format prints String for every verb.
func (p staticProvider) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

func (p staticProvider) Credential(context.Context, *Request) (*Credential, error) {
	return p.cred, nil
}

func newStatic(cfg *StaticConfig) (Provider, error) {
	cred := &Credential{Mode: ModeStatic, Headers: make([]Header, 0, len(cfg.Headers))}
	for i, h := range cfg.Headers {
		v, err := resolveHeaderValue(fmt.Sprintf("static.headers[%d].value", i), h.Value, h.Prefix)
		if err != nil {
			return nil, err
		}
		cred.Headers = append(cred.Headers, Header{Name: strings.ToLower(h.Name), Value: v})
	}
	return staticProvider{cred: cred}, nil
}

// resolveHeaderValue resolves ref and returns prefix+secret, checking that
// the result is a valid header value. Errors name path and ref only.
func resolveHeaderValue(path string, ref secret.Ref, prefix string) (string, error) {
	v, err := resolve(path, ref)
	if err != nil {
		return "", err
	}
	if err := checkHeaderSecret(v); err != nil {
		return "", fmt.Errorf("%s (%s): resolved secret %w", path, ref, err)
	}
	return prefix + v, nil
}

func resolve(path string, ref secret.Ref) (string, error) {
	v, err := ref.Resolve()
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return v.Reveal(), nil
}

type headerValueError string

func (e headerValueError) Error() string { return string(e) }

// checkHeaderSecret refuses values that would be rejected or altered in an
// HTTP header. The returned error never contains s.
func checkHeaderSecret(s string) error {
	if !httpguts.ValidHeaderFieldValue(s) {
		return headerValueError("contains characters not allowed in a header value")
	}
	if strings.TrimSpace(s) != s {
		return headerValueError("has leading or trailing whitespace")
	}
	return nil
}
