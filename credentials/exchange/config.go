package exchange

import (
	"fmt"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Client authentication methods (RFC 6749 2.3, RFC 7523 2.2).
const (
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
	AuthNone              = "none"
)

// Flavors of the exchange grant.
const (
	// FlavorRFC8693 is OAuth 2.0 Token Exchange (RFC 8693).
	FlavorRFC8693 = "rfc8693"
	// FlavorEntraOBO is the Microsoft Entra ID on-behalf-of flow: the
	// RFC 7523 jwt-bearer grant with requested_token_use=on_behalf_of.
	FlavorEntraOBO = "entra_obo"
)

// Grant types and token type identifiers (RFC 8693 section 3).
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// ClientAssertionJWT is the RFC 7523 client_assertion_type.
	ClientAssertionJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

	TokenTypeAccessToken  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefreshToken = "urn:ietf:params:oauth:token-type:refresh_token"
	TokenTypeIDToken      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeSAML1        = "urn:ietf:params:oauth:token-type:saml1"
	TokenTypeSAML2        = "urn:ietf:params:oauth:token-type:saml2"
	TokenTypeJWT          = "urn:ietf:params:oauth:token-type:jwt"
)

// Defaults and limits.
const (
	DefaultTimeout = 5 * time.Second
	MaxTimeout     = time.Minute
	// DefaultLifetime is assumed for an issued token when the response has
	// no expires_in and the token is not a JWT with exp. It is short on
	// purpose: the caller caches the token until shortly before then.
	DefaultLifetime = time.Minute
)

// Config configures a token exchange client for one security token service
// (STS). It is embedded by the outbound delegated mode under
// credential.delegated.sts:
//
//	sts:
//	  token_url: https://sts.example.com/oauth2/token
//	  client_id: mcpauthz
//	  client_auth: private_key_jwt
//	  private_key: {file: /run/secrets/mcpauthz-sts-key.pem}
//	  audience: https://mcp.docs.example.com/
//
// For flavor entra_obo the audience is chosen by the scopes of each request
// (for example "api://docs-mcp/.default"); audience, resource and the token
// type fields are not used and expected_audience (the aud Entra writes,
// usually the API's application ID URI or client ID) is required.
type Config struct {
	// TokenURL is the STS token endpoint: https, or http on loopback.
	TokenURL string `yaml:"token_url"`
	// ClientID identifies mcpauthz to the STS (required unless client_auth
	// is none, where it is sent when set).
	ClientID string `yaml:"client_id"`
	// ClientAuth is client_secret_basic (default), client_secret_post,
	// private_key_jwt or none.
	ClientAuth   string      `yaml:"client_auth"`
	ClientSecret *secret.Ref `yaml:"client_secret"`
	// PrivateKey is a PEM private key (PKCS#8, SEC 1 EC or PKCS#1 RSA) used
	// to sign RFC 7523 client assertions with private_key_jwt.
	PrivateKey *secret.Ref `yaml:"private_key"`
	// KeyID is the kid header of client assertions (optional).
	KeyID string `yaml:"key_id"`
	// SigningAlg overrides the assertion algorithm; default from the key:
	// ES256/ES384/ES512 by curve, RS256 for RSA, EdDSA for Ed25519.
	SigningAlg string `yaml:"signing_alg"`

	// Flavor is rfc8693 (default) or entra_obo.
	Flavor string `yaml:"flavor"`
	// Audience (RFC 8693 audience) and Resource (RFC 8707 resource, one or
	// more absolute URIs) name the target; a Request may override both.
	Audience string   `yaml:"audience"`
	Resource []string `yaml:"resource"`
	// RequestedTokenType defaults to TokenTypeAccessToken; access_token
	// and jwt are accepted (the result is sent as a bearer token).
	RequestedTokenType string `yaml:"requested_token_type"`
	// SubjectTokenType defaults to TokenTypeAccessToken.
	SubjectTokenType string `yaml:"subject_token_type"`
	// Timeout bounds one exchange (default 5s, at most 1m).
	Timeout time.Duration `yaml:"timeout"`

	// ExpectedAudience must be among the issued JWT's aud. Default: the
	// effective audience of the request, else its first resource.
	ExpectedAudience string `yaml:"expected_audience"`
	// AllowOpaque accepts issued tokens that are not JWTs; their audience
	// and actor cannot be checked.
	AllowOpaque bool `yaml:"allow_opaque"`

	// IssuedIssuer and JWKSURL (set both or neither) enable signature
	// verification of issued JWTs: iss must equal IssuedIssuer and the
	// signature must verify with a key from JWKSURL.
	IssuedIssuer string `yaml:"issued_issuer"`
	JWKSURL      string `yaml:"jwks_url"`

	// IgnoredIssuedScopes are scopes the STS always adds to what was
	// requested (Keycloak adds the exchanging client's default scopes such
	// as profile and email). They are tolerated in the issued scope and
	// dropped from what mcpauthz records; any other unrequested scope still
	// refuses the token (rfc8693).
	IgnoredIssuedScopes []string `yaml:"ignored_issued_scopes"`
}

// signingAlgs are the client assertion algorithms accepted in signing_alg.
var signingAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// subjectTokenTypes are the RFC 8693 section 3 identifiers.
var subjectTokenTypes = map[string]bool{
	TokenTypeAccessToken: true, TokenTypeRefreshToken: true, TokenTypeIDToken: true,
	TokenTypeSAML1: true, TokenTypeSAML2: true, TokenTypeJWT: true,
}

// requestedTokenTypes are the types mcpauthz can send as a bearer token.
var requestedTokenTypes = map[string]bool{TokenTypeAccessToken: true, TokenTypeJWT: true}

func (c Config) flavor() string {
	if c.Flavor == "" {
		return FlavorRFC8693
	}
	return c.Flavor
}

func (c Config) clientAuth() string {
	if c.ClientAuth == "" {
		return AuthClientSecretBasic
	}
	return c.ClientAuth
}

// Validate checks c without I/O (secrets are not resolved). It returns the
// problems joined, each prefixed with its field path relative to this
// Config, e.g. "client_secret: required with client_auth client_secret_basic".
// Field values that may be secrets are never echoed.
func (c Config) Validate() error {
	var l fielderr.List
	if c.TokenURL == "" {
		l.Add("token_url", "required")
	} else if msg := urlcheck.Endpoint(c.TokenURL); msg != "" {
		l.Add("token_url", msg)
	}
	c.validateClientAuth(&l)
	c.validateFlavor(&l)
	if strings.ContainsFunc(c.Audience, urlcheck.IsControl) {
		l.Add("audience", "contains control characters")
	}
	for i, r := range c.Resource {
		if !urlcheck.AbsoluteURI(r) {
			l.Add(fmt.Sprintf("resource[%d]", i), "must be an absolute URI without fragment")
		}
	}
	if strings.ContainsFunc(c.ExpectedAudience, urlcheck.IsControl) {
		l.Add("expected_audience", "contains control characters")
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		l.Add("timeout", fmt.Sprintf("must be between 0 (default %s) and %s", DefaultTimeout, MaxTimeout))
	}
	c.validateIssued(&l)
	return l.Err()
}

// validateClientAuth checks client_auth and the credentials it needs.
func (c Config) validateClientAuth(l *fielderr.List) {
	auth := c.clientAuth()
	switch auth {
	case AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT, AuthNone:
	default:
		l.Add("client_auth", fmt.Sprintf("unknown method %q (want client_secret_basic, client_secret_post, private_key_jwt or none)", urlcheck.Truncate(c.ClientAuth, 32)))
	}
	switch {
	case c.ClientID == "" && auth != AuthNone:
		l.Add("client_id", "required with client_auth "+auth)
	case strings.ContainsFunc(c.ClientID, urlcheck.IsControl):
		l.Add("client_id", "contains control characters")
	}
	needSecret := auth == AuthClientSecretBasic || auth == AuthClientSecretPost
	switch {
	case needSecret && c.ClientSecret == nil:
		l.Add("client_secret", "required with client_auth "+auth)
	case needSecret:
		checkRef(l, "client_secret", *c.ClientSecret)
	case c.ClientSecret != nil:
		l.Add("client_secret", "only used with client_secret_basic or client_secret_post")
	}
	if auth != AuthPrivateKeyJWT {
		const msg = "only used with client_auth private_key_jwt"
		forbid(l, c.PrivateKey != nil, "private_key", msg)
		forbid(l, c.KeyID != "", "key_id", msg)
		forbid(l, c.SigningAlg != "", "signing_alg", msg)
		return
	}
	if c.PrivateKey == nil {
		l.Add("private_key", "required with client_auth private_key_jwt")
	} else {
		checkRef(l, "private_key", *c.PrivateKey)
	}
	if c.SigningAlg != "" && !signingAlgs[c.SigningAlg] {
		l.Add("signing_alg", fmt.Sprintf("unsupported algorithm %q", urlcheck.Truncate(c.SigningAlg, 16)))
	}
	if strings.ContainsFunc(c.KeyID, urlcheck.IsControl) {
		l.Add("key_id", "contains control characters")
	}
}

// validateFlavor checks flavor and the fields only one flavor uses.
func (c Config) validateFlavor(l *fielderr.List) {
	switch c.flavor() {
	case FlavorRFC8693:
		if c.RequestedTokenType != "" && !requestedTokenTypes[c.RequestedTokenType] {
			l.Add("requested_token_type", "must be "+TokenTypeAccessToken+" or "+TokenTypeJWT)
		}
		if c.SubjectTokenType != "" && !subjectTokenTypes[c.SubjectTokenType] {
			l.Add("subject_token_type", "not an RFC 8693 token type identifier")
		}
	case FlavorEntraOBO:
		const msg = "not used with flavor entra_obo (the scopes select the audience)"
		forbid(l, c.Audience != "", "audience", msg)
		forbid(l, len(c.Resource) > 0, "resource", msg)
		forbid(l, c.RequestedTokenType != "", "requested_token_type", "not used with flavor entra_obo")
		forbid(l, c.SubjectTokenType != "", "subject_token_type", "not used with flavor entra_obo")
		if c.ExpectedAudience == "" {
			l.Add("expected_audience", "required with flavor entra_obo (the aud of the tokens Entra issues)")
		}
	default:
		l.Add("flavor", fmt.Sprintf("unknown flavor %q (want rfc8693 or entra_obo)", urlcheck.Truncate(c.Flavor, 32)))
	}
}

// validateIssued checks issued_issuer and jwks_url, which go together.
func (c Config) validateIssued(l *fielderr.List) {
	switch {
	case c.IssuedIssuer != "" && c.JWKSURL == "":
		l.Add("jwks_url", "required with issued_issuer")
	case c.IssuedIssuer == "" && c.JWKSURL != "":
		l.Add("issued_issuer", "required with jwks_url")
	case c.IssuedIssuer != "":
		if !urlcheck.AbsoluteURI(c.IssuedIssuer) {
			l.Add("issued_issuer", "must be an absolute URI")
		}
		if msg := urlcheck.Endpoint(c.JWKSURL); msg != "" {
			l.Add("jwks_url", msg)
		}
	}
}

// forbid records path: msg when set.
func forbid(l *fielderr.List, set bool, path, msg string) {
	if set {
		l.Add(path, msg)
	}
}

// checkRef records what is wrong with the secret reference r at path.
func checkRef(l *fielderr.List, path string, r secret.Ref) {
	if r.IsZero() {
		l.Add(path, "required ({env: NAME} or {file: PATH})")
		return
	}
	if err := r.Validate(); err != nil {
		l.Add(path, strings.TrimPrefix(err.Error(), "secret: "))
	}
}
