package devidp

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/mcpauthz/mcpauthz/internal/httpjson"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// MaxDevTokenForm bounds the body of a DevTokenHandler request (8 KiB).
const MaxDevTokenForm = 8 << 10

// maxDevField bounds every single form value.
const maxDevField = 1024

// DevTokenOptions configures DevTokenHandler.
type DevTokenOptions struct {
	// DefaultAudience is the aud of tokens whose form has no aud field.
	// Empty makes aud a required field.
	DefaultAudience string
}

// DevTokenResponse is the JSON body of a successful DevTokenHandler call
// (the shape of an OAuth 2.0 token response, RFC 6749 section 5.1).
type DevTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// devTokenError is the JSON body of a refused request (RFC 6749 section 5.2 shape).
type devTokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// devTokenFields are the accepted form fields; anything else is refused so
// that a typo ("role" for "roles") fails loudly instead of minting a token
// without the intended claim.
var devTokenFields = map[string]bool{
	"sub": true, "roles": true, "org": true, "org_id": true, "act": true, "aud": true, "scope": true, "client_id": true,
}

// DevTokenHandler returns a DEVELOPMENT-ONLY endpoint that mints an access
// token for whatever the caller asks, without any authentication. Mount it
// (e.g. at POST /dev/token) only on a development issuer.
//
// It accepts only POST with an application/x-www-form-urlencoded body of at
// most MaxDevTokenForm bytes and these fields, each at most once:
//
//	sub        required; the token's sub
//	roles      comma-separated list; the roles claim (array)
//	org        the org_id claim
//	act        an actor subject; the act claim {"sub": act} (agent acting for sub)
//	aud        the audience; defaults to DevTokenOptions.DefaultAudience,
//	           required when that is empty
//	scope      space-separated scopes; the scope claim
//	client_id  the client_id claim
//
// It answers 200 with a DevTokenResponse, 400 with a JSON error
// ({"error": "invalid_request", "error_description": ...}) for bad input,
// 405 for other methods and 413 for an oversized body. Error descriptions
// name the offending field, never echo its value. The handler is safe for
// concurrent use.
func (i *Issuer) DevTokenHandler(o DevTokenOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeDevError(w, http.StatusMethodNotAllowed, "invalid_request", "only POST is allowed")
			return
		}
		ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || ct != "application/x-www-form-urlencoded" {
			writeDevError(w, http.StatusBadRequest, "invalid_request", "content type must be application/x-www-form-urlencoded")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxDevTokenForm)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeDevError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("form larger than %d bytes", MaxDevTokenForm))
				return
			}
			writeDevError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
			return
		}
		claims, err := DevTokenClaims(r.PostForm, o.DefaultAudience)
		if err != nil {
			writeDevError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		tok, err := i.Mint(claims)
		if err != nil {
			writeDevError(w, http.StatusInternalServerError, "server_error", "could not sign the token")
			return
		}
		httpjson.Write(w, http.StatusOK, DevTokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(i.opts.TokenTTL.Seconds())})
	})
}

// DevTokenClaims validates the DevTokenHandler form fields and returns the
// claims to mint (without iss, iat, exp and jti, which Mint fills in).
// Errors name the field, never its value.
func DevTokenClaims(form url.Values, defaultAudience string) (map[string]any, error) {
	for k, vs := range form {
		if !devTokenFields[k] {
			return nil, fmt.Errorf("devidp: unknown field %q (accepted: sub, roles, org (or org_id, the claim it sets), act, aud, scope, client_id)", urlcheck.Truncate(k, 40))
		}
		if len(vs) > 1 {
			return nil, fmt.Errorf("devidp: field %s given more than once", k)
		}
		if len(vs[0]) > maxDevField {
			return nil, fmt.Errorf("devidp: field %s longer than %d bytes", k, maxDevField)
		}
		if strings.IndexFunc(vs[0], unicode.IsControl) >= 0 {
			return nil, fmt.Errorf("devidp: field %s contains control characters", k)
		}
	}
	sub := strings.TrimSpace(form.Get("sub"))
	if sub == "" {
		return nil, errors.New("devidp: sub is required")
	}
	aud := strings.TrimSpace(form.Get("aud"))
	if aud == "" {
		aud = defaultAudience
	}
	if aud == "" {
		return nil, errors.New("devidp: aud is required (this issuer has no default audience)")
	}
	claims := map[string]any{"sub": sub, "aud": aud}
	if form.Has("roles") {
		roles := []string{}
		for r := range strings.SplitSeq(form.Get("roles"), ",") {
			if r = strings.TrimSpace(r); r != "" {
				roles = append(roles, r)
			}
		}
		if len(roles) == 0 {
			return nil, errors.New("devidp: roles must list at least one role when present")
		}
		claims["roles"] = roles
	}
	if form.Has("org") && form.Has("org_id") {
		return nil, errors.New("devidp: give org or org_id, not both")
	}
	optional := []struct{ field, claim string }{{"org", "org_id"}, {"org_id", "org_id"}, {"scope", "scope"}, {"client_id", "client_id"}}
	for _, f := range optional {
		if !form.Has(f.field) {
			continue
		}
		v := strings.TrimSpace(form.Get(f.field))
		if v == "" {
			return nil, fmt.Errorf("devidp: %s must not be empty when present", f.field)
		}
		if f.field == "scope" {
			v = strings.Join(strings.Fields(v), " ")
		}
		claims[f.claim] = v
	}
	if form.Has("act") {
		act := strings.TrimSpace(form.Get("act"))
		if act == "" {
			return nil, errors.New("devidp: act must not be empty when present")
		}
		if act == sub {
			return nil, errors.New("devidp: act must differ from sub (an actor acts for someone else)")
		}
		claims["act"] = map[string]any{"sub": act}
	}
	return claims, nil
}

func writeDevError(w http.ResponseWriter, status int, code, desc string) {
	httpjson.Write(w, status, devTokenError{Error: code, Description: desc})
}
