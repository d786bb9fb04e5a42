// Package exchange is a client for a security token service (STS): OAuth
// 2.0 Token Exchange (RFC 8693) and the Microsoft Entra ID on-behalf-of
// flow (RFC 7523 jwt-bearer grant with requested_token_use=on_behalf_of).
// mcpauthz's delegated outbound mode uses it to trade the caller's token
// for a short-lived token for one upstream MCP server that names the user
// (sub) and the agent acting for them (act).
//
// The client authenticates with client_secret_basic, client_secret_post,
// private_key_jwt (RFC 7523 client assertions) or none. Calls to the STS
// never follow redirects, are bounded by a timeout and read at most 1 MiB.
//
// Every issued token is checked before it is returned: it must be usable as
// a bearer token, must not be expired, must not carry more scope than was
// requested (RFC 8693), and, when it is a JWT, its aud must contain the
// expected audience and its act.sub must name the expected actor. Opaque
// tokens cannot be checked and are refused unless Config.AllowOpaque is
// set. With Config.IssuedIssuer and Config.JWKSURL the issued JWT's
// signature and issuer are verified too.
//
// Subject and actor tokens, the client secret, client assertions and issued
// tokens never appear in errors or logs. Every failure is an *Error whose
// Reason is a short, stable code and whose Transient field tells a caller
// whether to answer 503 (retry later) or 403.
//
// This package has no cache: callers cache tokens (see credentials/outbound).
package exchange

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/net/http/httpguts"

	"github.com/mcpauthz/mcpauthz/credentials/jwks"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Options are the runtime dependencies of a Client. All are optional.
type Options struct {
	// HTTPClient is copied; its Transport is used for the STS and the
	// JWKS. Its redirect policy is replaced and its timeout capped.
	HTTPClient *http.Client
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Request is one exchange. SubjectToken is required; everything else is
// optional.
type Request struct {
	// SubjectToken is the token being exchanged (for entra_obo: the
	// assertion, the user's access token for mcpauthz's Entra app).
	SubjectToken string
	// SubjectTokenType overrides Config.SubjectTokenType (rfc8693 only).
	SubjectTokenType string
	// ActorToken, when set, is sent as actor_token with ActorTokenType
	// (default TokenTypeAccessToken); rfc8693 only.
	ActorToken     string
	ActorTokenType string
	// ExpectedActor is the subject the issued JWT's act.sub must equal.
	// When empty and ActorToken is a JWT, its sub is expected (read without
	// verification; the STS verifies the actor token). When empty and the
	// actor token is opaque, act.sub must merely be present. When empty
	// and no actor token is sent, act is not checked. Entra on-behalf-of
	// tokens carry no act claim: leave it empty with entra_obo.
	ExpectedActor string
	// Scopes are requested as the space-joined scope parameter. For
	// entra_obo at least one is required, in Entra's resource-qualified
	// form, e.g. "api://docs-mcp/.default" or "api://docs-mcp/Docs.Read".
	Scopes []string
	// Audience and Resource override Config.Audience and Config.Resource
	// (a non-empty value replaces the configured one). They are ignored
	// with entra_obo, where the scopes select the audience.
	Audience string
	Resource []string
}

// Client exchanges tokens with one STS. It is immutable after New and safe
// for concurrent use.
type Client struct {
	flavor    string
	auth      string
	tokenURL  string
	clientID  string
	secret    secret.Value
	key       crypto.Signer
	alg       jose.SignatureAlgorithm
	kid       string
	audience  string
	resource  []string
	reqType   string
	subjType  string
	expAud    string
	opaque    bool
	ignored   []string // issued scopes tolerated and dropped
	timeout   time.Duration
	hc        *http.Client
	verifier  *oidc.IDTokenVerifier // nil without issued_issuer
	now       func() time.Time
	log       *slog.Logger
	userAgent string
}

// New validates cfg, resolves its secrets and builds a Client. ctx is
// unused (JWKS fetches happen on first use, detached from the caller's
// cancellation); New does no I/O besides reading secrets.
func New(ctx context.Context, cfg Config, opts Options) (*Client, error) {
	_ = ctx
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("exchange: invalid config: %w", err)
	}
	c := &Client{
		flavor:    cfg.flavor(),
		auth:      cfg.clientAuth(),
		tokenURL:  cfg.TokenURL,
		clientID:  cfg.ClientID,
		kid:       cfg.KeyID,
		audience:  cfg.Audience,
		resource:  slices.Clone(cfg.Resource),
		reqType:   orDefault(cfg.RequestedTokenType, TokenTypeAccessToken),
		subjType:  orDefault(cfg.SubjectTokenType, TokenTypeAccessToken),
		expAud:    cfg.ExpectedAudience,
		opaque:    cfg.AllowOpaque,
		ignored:   slices.Clone(cfg.IgnoredIssuedScopes),
		timeout:   cfg.Timeout,
		now:       opts.Now,
		log:       opts.Logger,
		userAgent: "mcpauthz-exchange",
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	switch c.auth {
	case AuthClientSecretBasic, AuthClientSecretPost:
		v, err := cfg.ClientSecret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("exchange: client_secret: %w", err)
		}
		c.secret = v
	case AuthPrivateKeyJWT:
		v, err := cfg.PrivateKey.Resolve()
		if err != nil {
			return nil, fmt.Errorf("exchange: private_key: %w", err)
		}
		key, err := ParsePrivateKey([]byte(v.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("exchange: private_key (%s): %w", cfg.PrivateKey, err)
		}
		if c.alg, err = keyAlg(key, cfg.SigningAlg); err != nil {
			return nil, fmt.Errorf("exchange: %w", err)
		}
		c.key = key
	}
	c.hc = newHTTPClient(opts.HTTPClient, c.timeout)
	if cfg.IssuedIssuer != "" {
		// The one JWKS implementation (credentials/jwks): at most 1 MiB, no
		// redirects, an unknown kid refreshes at most once per
		// jwks.DefaultMinRefresh.
		ks, err := jwks.New(jwks.Config{
			Issuer:     cfg.IssuedIssuer,
			Name:       "issued_issuer",
			JWKSURL:    cfg.JWKSURL,
			HTTPClient: newHTTPClient(opts.HTTPClient, c.timeout),
			Timeout:    c.timeout,
			Now:        c.now,
			Logger:     c.log,
		})
		if err != nil {
			return nil, fmt.Errorf("exchange: jwks_url: %w", err)
		}
		c.verifier = oidc.NewVerifier(cfg.IssuedIssuer, ks, &oidc.Config{
			SkipClientIDCheck:    true, // aud is checked against the expected audience
			SupportedSigningAlgs: jwks.Algorithms(),
			Now:                  c.now,
		})
	}
	return c, nil
}

// String describes the client without secrets.
func (c *Client) String() string {
	return "exchange.Client{flavor=" + c.flavor + " client_id=" + c.clientID + " client_auth=" + c.auth + " token_url=" + c.tokenURL + "}"
}

// Format prints String for every verb.
func (c *Client) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// call is the state of one exchange: what was sent and what is expected.
type call struct {
	form      url.Values
	scopes    []string
	expAud    string
	expActor  string
	actorSent bool
	secrets   []string // values that must never be echoed
	basicUser string
	basicPass string
	start     time.Time
}

// Exchange sends req to the STS and returns the checked token. The call is
// bounded by Config.Timeout and by ctx. It returns an *Error on failure.
func (c *Client) Exchange(ctx context.Context, req Request) (*Token, error) {
	cl, err := c.prepare(req)
	if err != nil {
		return nil, err
	}
	tok, err := c.do(ctx, cl)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			c.log.Warn("exchange: token exchange failed", "flavor", c.flavor, "client_id", c.clientID,
				"reason", e.Reason, "status", e.Status, "code", e.Code, "transient", e.Transient)
		}
		return nil, err
	}
	c.log.Debug("exchange: token issued", "flavor", c.flavor, "client_id", c.clientID, "token", tok)
	return tok, nil
}

func badRequest(msg string) *Error {
	return &Error{Reason: ReasonBadRequest, Description: msg}
}

// prepare checks req and builds the form.
func (c *Client) prepare(req Request) (*call, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	cl := &call{form: url.Values{}, scopes: slices.Clone(req.Scopes), start: c.now()}
	cl.secrets = append(cl.secrets, req.SubjectToken)
	var err error
	switch c.flavor {
	case FlavorEntraOBO:
		err = c.oboForm(cl, req)
	default:
		err = c.exchangeForm(cl, req)
	}
	if err != nil {
		return nil, err
	}
	if len(req.Scopes) > 0 {
		cl.form.Set("scope", strings.Join(req.Scopes, " "))
	}
	cl.expActor = req.ExpectedActor
	if cl.expActor == "" && req.ActorToken != "" {
		cl.expActor = unverifiedSubject(req.ActorToken)
	}
	if err := c.authenticate(cl); err != nil {
		return nil, err
	}
	return cl, nil
}

// checkRequest checks what req must satisfy whatever the flavor.
func checkRequest(req Request) error {
	if req.SubjectToken == "" {
		return badRequest("no subject token")
	}
	if !httpguts.ValidHeaderFieldValue(req.SubjectToken) || strings.ContainsAny(req.SubjectToken, " \t") {
		return badRequest("subject token contains invalid characters")
	}
	if req.ActorToken == "" && req.ActorTokenType != "" {
		return badRequest("actor token type without actor token")
	}
	for _, s := range req.Scopes {
		if !urlcheck.ScopeToken(s) {
			return badRequest("invalid scope token")
		}
	}
	return nil
}

// oboForm fills cl's form for the Entra on-behalf-of flow. Audience and
// Resource are ignored: the scopes select the audience and the issued aud
// is checked against expected_audience.
func (c *Client) oboForm(cl *call, req Request) error {
	if req.ActorToken != "" || req.SubjectTokenType != "" {
		return badRequest("entra_obo takes no actor token or subject token type")
	}
	if len(req.Scopes) == 0 {
		return badRequest("entra_obo needs at least one scope (e.g. api://APP/.default)")
	}
	cl.form.Set("grant_type", GrantJWTBearer)
	cl.form.Set("assertion", req.SubjectToken)
	cl.form.Set("requested_token_use", "on_behalf_of")
	cl.expAud = c.expAud
	return nil
}

// exchangeForm fills cl's form for RFC 8693 token exchange and sets the
// audience the issued token must carry.
func (c *Client) exchangeForm(cl *call, req Request) error {
	f := cl.form
	st := orDefault(req.SubjectTokenType, c.subjType)
	if !subjectTokenTypes[st] {
		return badRequest("subject token type is not an RFC 8693 token type")
	}
	f.Set("grant_type", GrantTokenExchange)
	f.Set("subject_token", req.SubjectToken)
	f.Set("subject_token_type", st)
	if err := actorForm(cl, req); err != nil {
		return err
	}
	aud := orDefault(req.Audience, c.audience)
	if strings.ContainsFunc(aud, urlcheck.IsControl) {
		return badRequest("audience contains control characters")
	}
	res := c.resource
	if len(req.Resource) > 0 {
		res = req.Resource
	}
	for _, r := range res {
		if !urlcheck.AbsoluteURI(r) {
			return badRequest("resource is not an absolute URI")
		}
	}
	if aud != "" {
		f.Set("audience", aud)
	}
	for _, r := range res {
		f.Add("resource", r)
	}
	f.Set("requested_token_type", c.reqType)
	cl.expAud = c.expAud
	if cl.expAud == "" {
		cl.expAud = aud
	}
	if cl.expAud == "" && len(res) > 0 {
		cl.expAud = res[0]
	}
	if cl.expAud == "" {
		return badRequest("no audience, resource or expected_audience: the issued token's audience could not be checked")
	}
	return nil
}

// actorForm adds req's actor token, if any, to cl's form.
func actorForm(cl *call, req Request) error {
	if req.ActorToken == "" {
		return nil
	}
	if !httpguts.ValidHeaderFieldValue(req.ActorToken) || strings.ContainsAny(req.ActorToken, " \t") {
		return badRequest("actor token contains invalid characters")
	}
	at := orDefault(req.ActorTokenType, TokenTypeAccessToken)
	if !subjectTokenTypes[at] {
		return badRequest("actor token type is not an RFC 8693 token type")
	}
	cl.form.Set("actor_token", req.ActorToken)
	cl.form.Set("actor_token_type", at)
	cl.actorSent = true
	cl.secrets = append(cl.secrets, req.ActorToken)
	return nil
}

// authenticate adds the client authentication to cl.
func (c *Client) authenticate(cl *call) error {
	f := cl.form
	switch c.auth {
	case AuthClientSecretBasic:
		// RFC 6749 2.3.1: form-encode before Basic.
		cl.basicUser = url.QueryEscape(c.clientID)
		cl.basicPass = url.QueryEscape(c.secret.Reveal())
		cl.secrets = append(cl.secrets, c.secret.Reveal(), cl.basicPass)
	case AuthClientSecretPost:
		f.Set("client_id", c.clientID)
		f.Set("client_secret", c.secret.Reveal())
		cl.secrets = append(cl.secrets, c.secret.Reveal())
	case AuthPrivateKeyJWT:
		a, err := clientAssertion(c.key, c.alg, c.kid, c.clientID, c.tokenURL, cl.start)
		if err != nil {
			return &Error{Reason: ReasonBadRequest, Description: "could not sign the client assertion"}
		}
		f.Set("client_id", c.clientID)
		f.Set("client_assertion_type", ClientAssertionJWT)
		f.Set("client_assertion", a)
		cl.secrets = append(cl.secrets, a)
	case AuthNone:
		if c.clientID != "" {
			f.Set("client_id", c.clientID)
		}
	}
	return nil
}

// tokenResponse is the successful token endpoint response.
type tokenResponse struct {
	AccessToken     string          `json:"access_token"`
	IssuedTokenType string          `json:"issued_token_type"`
	TokenType       string          `json:"token_type"`
	ExpiresIn       json.RawMessage `json:"expires_in"`
	Scope           string          `json:"scope"`
}

type errorResponse struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (c *Client) do(ctx context.Context, cl *call) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.tokenURL, strings.NewReader(cl.form.Encode()))
	if err != nil {
		return nil, &Error{Reason: ReasonBadRequest, Description: "could not build the request"}
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", c.userAgent)
	if c.auth == AuthClientSecretBasic {
		hreq.SetBasicAuth(cl.basicUser, cl.basicPass)
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	body, rerr := urlcheck.ReadLimited(resp, maxResponseBytes, errTooLarge)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, &Error{Status: resp.StatusCode, Reason: ReasonRedirect, Description: "redirects are not followed"}
	case resp.StatusCode != http.StatusOK:
		return nil, c.endpointError(resp.StatusCode, body, rerr, cl)
	case errors.Is(rerr, errTooLarge):
		return nil, &Error{Status: resp.StatusCode, Reason: ReasonBadResponse, Description: "response exceeds 1 MiB"}
	case rerr != nil:
		return nil, transportError(ctx, rerr)
	}
	return c.parse(ctx, body, cl)
}

// transportError classifies a failed round trip or body read.
func transportError(ctx context.Context, err error) *Error {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
		return &Error{Reason: ReasonCanceled, Transient: true, Err: context.Canceled}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Reason: ReasonTimeout, Transient: true, Err: context.DeadlineExceeded}
	}
	// *url.Error names the method and the (validated, credential-free)
	// token URL; the request body is never part of it.
	return &Error{Reason: ReasonUnreachable, Transient: true, Err: err}
}

// endpointError turns a non-200, non-redirect answer into an *Error.
func (c *Client) endpointError(status int, body []byte, readErr error, cl *call) *Error {
	var er errorResponse
	if readErr == nil {
		_ = json.Unmarshal(body, &er)
	}
	e := &Error{Status: status, Code: codeOf(er.Error), Description: sanitize(er.ErrorDescription, cl.secrets...)}
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		e.Code == "server_error", e.Code == "temporarily_unavailable":
		e.Reason, e.Transient = ReasonUnavailable, true
	case e.Code != "" && e.Code != "unrecognized":
		e.Reason = "sts_rejected_" + e.Code
	default:
		e.Reason = ReasonRejected
	}
	return e
}

func badResponse(msg string) *Error {
	return &Error{Status: http.StatusOK, Reason: ReasonBadResponse, Description: msg}
}

// parse checks a 200 response and the token it carries.
func (c *Client) parse(ctx context.Context, body []byte, cl *call) (*Token, error) {
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, badResponse("response is not a JSON token response")
	}
	tok, err := c.newToken(&tr, cl)
	if err != nil {
		return nil, err
	}
	claims, isJWT := decodeJWT(tr.AccessToken)
	if isJWT {
		tok.Claims = claims
	}
	if err := c.setExpiry(tok, tr.ExpiresIn, isJWT, cl); err != nil {
		return nil, err
	}
	if !isJWT {
		if !c.opaque {
			return nil, &Error{Status: http.StatusOK, Reason: ReasonIssuedOpaque,
				Description: "issued token is not a JWT; set allow_opaque to accept it unchecked"}
		}
		return tok, nil
	}
	if err := c.checkIssued(ctx, tok, cl); err != nil {
		return nil, err
	}
	return tok, nil
}

// newToken checks the fields of tr other than expires_in and returns the
// token they describe.
func (c *Client) newToken(tr *tokenResponse, cl *call) (*Token, error) {
	if tr.AccessToken == "" {
		return nil, badResponse("no access_token")
	}
	if !httpguts.ValidHeaderFieldValue(tr.AccessToken) || strings.ContainsAny(tr.AccessToken, " \t") {
		return nil, badResponse("access_token is not usable as a bearer token")
	}
	tok := &Token{AccessToken: tr.AccessToken, TokenType: tr.TokenType, IssuedTokenType: tr.IssuedTokenType}
	switch {
	case c.flavor == FlavorRFC8693 && tr.IssuedTokenType == "":
		return nil, badResponse("no issued_token_type (RFC 8693 section 2.2.1)")
	case tr.IssuedTokenType == "":
		tok.IssuedTokenType = TokenTypeAccessToken
	case !requestedTokenTypes[tr.IssuedTokenType]:
		return nil, badResponse("issued_token_type is neither access_token nor jwt")
	}
	switch {
	case tr.TokenType == "" || strings.EqualFold(tr.TokenType, "bearer"):
		tok.TokenType = "Bearer"
	case tr.TokenType == "N_A" && tok.IssuedTokenType == TokenTypeJWT:
	default:
		return nil, badResponse("token_type is not Bearer")
	}
	tok.Scopes = cl.scopes
	if s := strings.Fields(tr.Scope); len(s) > 0 {
		s = slices.DeleteFunc(s, func(sc string) bool { return slices.Contains(c.ignored, sc) && !slices.Contains(cl.scopes, sc) })
		tok.Scopes = s
		if c.flavor == FlavorRFC8693 && len(cl.scopes) > 0 {
			for _, sc := range s {
				if !slices.Contains(cl.scopes, sc) {
					return nil, badResponse("issued scope exceeds the requested scope")
				}
			}
		}
	}
	return tok, nil
}

// setExpiry sets tok.ExpiresAt from expires_in and, for a JWT, its exp
// (whichever is earlier); a JWT already expired is refused.
func (c *Client) setExpiry(tok *Token, expires json.RawMessage, isJWT bool, cl *call) error {
	now := c.now()
	var lifetime time.Duration
	if secs := expiresIn(expires); secs > 0 {
		lifetime = time.Duration(secs) * time.Second
	}
	var jwtExp time.Time
	if isJWT {
		if exp, ok := jwks.NumericDate(tok.Claims["exp"]); ok {
			jwtExp = exp
			if !jwtExp.After(now) {
				return badResponse("issued token already expired")
			}
		}
	}
	switch {
	case lifetime > 0:
		tok.ExpiresAt = cl.start.Add(lifetime)
		if !jwtExp.IsZero() && jwtExp.Before(tok.ExpiresAt) {
			tok.ExpiresAt = jwtExp
		}
	case !jwtExp.IsZero():
		tok.ExpiresAt = jwtExp
	default:
		tok.ExpiresAt = cl.start.Add(DefaultLifetime)
	}
	return nil
}

// checkIssued verifies an issued JWT and checks its audience and actor.
func (c *Client) checkIssued(ctx context.Context, tok *Token, cl *call) error {
	if c.verifier != nil {
		if _, err := c.verifier.Verify(ctx, tok.AccessToken); err != nil {
			return &Error{Status: http.StatusOK, Reason: ReasonIssuedInvalid, Description: verifyFailure(err)}
		}
	}
	if cl.expAud != "" && !audContains(tok.Claims["aud"], cl.expAud) {
		return &Error{Status: http.StatusOK, Reason: ReasonIssuedWrongAudience,
			Description: "issued token's aud does not contain " + strconv.Quote(urlcheck.Truncate(cl.expAud, 100))}
	}
	if act := tok.Actor(); cl.expActor != "" && act != cl.expActor {
		return &Error{Status: http.StatusOK, Reason: ReasonIssuedWrongActor,
			Description: fmt.Sprintf("issued token's act.sub is %q, want %q", urlcheck.Truncate(act, 100), urlcheck.Truncate(cl.expActor, 100))}
	} else if cl.expActor == "" && cl.actorSent && act == "" {
		return &Error{Status: http.StatusOK, Reason: ReasonIssuedWrongActor,
			Description: "an actor token was sent but the issued token has no act.sub"}
	}
	return nil
}

// verifyFailure maps a go-oidc error to a short description that never
// quotes the token.
func verifyFailure(err error) string {
	var exp *oidc.TokenExpiredError
	s := err.Error()
	switch {
	case errors.As(err, &exp):
		return "issued token expired"
	case strings.Contains(s, "different provider"):
		return "issued token has the wrong issuer"
	case strings.Contains(s, "signature"):
		return "issued token signature did not verify"
	default:
		return "issued token did not verify"
	}
}

// decodeJWT decodes a compact JWS's claims without verifying it.
func decodeJWT(tok string) (map[string]any, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if d.Decode(&m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

// unverifiedSubject reads sub of a JWT without verifying it.
func unverifiedSubject(tok string) string {
	m, ok := decodeJWT(tok)
	if !ok {
		return ""
	}
	s, _ := m["sub"].(string)
	return s
}

func audContains(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// expiresIn reads expires_in (a JSON number, or a numeric string as some
// servers send); 0 when absent, invalid or out of range.
func expiresIn(raw json.RawMessage) int64 {
	const maxSecs = 10 * 365 * 24 * 3600
	if len(raw) == 0 {
		return 0
	}
	s := strings.Trim(string(raw), `"`)
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 || n > maxSecs {
		return 0
	}
	return int64(n)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
