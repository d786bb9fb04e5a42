package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

const (
	// defaultLifetime is assumed when the token response has no expires_in.
	defaultLifetime = 5 * time.Minute
	// maxExpirySkew is subtracted from the expiry before a token is
	// considered unusable (clock skew and transit time).
	maxExpirySkew = 10 * time.Second
	// retryBackoff spaces background refresh attempts after a failure.
	retryBackoff = 5 * time.Second
	sfKey        = "token"
)

func newServiceAccount(cfg *ServiceAccountConfig, opts Options) (Provider, error) {
	header := cfg.Header
	if header == "" {
		header = DefaultHeader
	}
	bearer := strings.EqualFold(header, DefaultHeader)
	name := strings.ToLower(header)
	if !cfg.clientCredentials() {
		prefix := ""
		if bearer {
			prefix = "Bearer "
		}
		v, err := resolveHeaderValue("service_account.secret", *cfg.Secret, prefix)
		if err != nil {
			return nil, err
		}
		return staticProvider{cred: &Credential{
			Mode:    ModeServiceAccount,
			Headers: []Header{{Name: name, Value: v}},
		}}, nil
	}

	cs, err := cfg.ClientSecret.Resolve()
	if err != nil {
		return nil, fmt.Errorf("service_account.client_secret: %w", err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	refreshBefore := cfg.RefreshBefore
	if refreshBefore == 0 {
		refreshBefore = DefaultRefreshBefore
	}
	style := oauth2.AuthStyleInHeader
	if cfg.AuthStyle == "post" {
		style = oauth2.AuthStyleInParams
	}
	params := url.Values{}
	if cfg.Audience != "" {
		params.Set("audience", cfg.Audience)
		if urlcheck.AbsoluteURI(cfg.Audience) {
			params.Set("resource", cfg.Audience)
		}
	}
	return &clientCredentialsProvider{
		tokenURL:      cfg.TokenURL,
		clientID:      cfg.ClientID,
		clientSecret:  cs,
		scopes:        append([]string(nil), cfg.Scopes...),
		params:        params,
		authStyle:     style,
		header:        name,
		bearer:        bearer,
		audience:      cfg.Audience,
		refreshBefore: refreshBefore,
		timeout:       timeout,
		hc:            newHTTPClient(opts.HTTPClient, timeout),
		now:           opts.Now,
		log:           opts.Logger,
	}, nil
}

// clientCredentialsProvider fetches an OAuth 2.0 client-credentials token
// and caches the resulting *Credential.
//
// It is safe for concurrent use. A warm call is one atomic load and two
// time comparisons. When the token enters its refresh window one
// background refresh starts and callers keep getting the current token;
// once the token is no longer usable, callers wait for a fetch. All
// fetches are collapsed with singleflight and run detached from the
// caller's cancellation, bounded by the configured timeout.
type clientCredentialsProvider struct {
	tokenURL      string
	clientID      string
	clientSecret  secret.Value
	scopes        []string
	params        url.Values
	authStyle     oauth2.AuthStyle
	header        string
	bearer        bool
	audience      string
	refreshBefore time.Duration
	timeout       time.Duration
	hc            *http.Client
	now           func() time.Time
	log           *slog.Logger

	cur        atomic.Pointer[cachedToken]
	sf         singleflight.Group
	refreshing atomic.Bool
	retryAfter atomic.Int64 // unix nanoseconds; no background refresh before

	// afterRefresh, when set (tests only, before first use), runs after
	// each background refresh attempt.
	afterRefresh func()
}

var _ Provider = (*clientCredentialsProvider)(nil)

// String describes the provider without secrets or cached tokens.
func (p *clientCredentialsProvider) String() string {
	return "outbound.Provider{mode=service_account grant=client_credentials client_id=" + p.clientID + " token_url=" + p.tokenURL + "}"
}

// Format prints String for every verb, so fmt never reflects over the
// provider's secret or its concurrently updated cache.
func (p *clientCredentialsProvider) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

type cachedToken struct {
	cred        *Credential
	refreshAt   time.Time // start background refresh from here
	usableUntil time.Time // stop handing it out from here
}

// Credential returns the cached token credential, fetching it when there is
// no usable token.
func (p *clientCredentialsProvider) Credential(ctx context.Context, _ *Request) (*Credential, error) {
	now := p.now()
	if c := p.cur.Load(); c != nil && now.Before(c.usableUntil) {
		if !now.Before(c.refreshAt) {
			p.refreshAsync(ctx, now)
		}
		return c.cred, nil
	}
	ch := p.sf.DoChan(sfKey, func() (any, error) { return p.fetch(ctx) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*cachedToken).cred, nil
	case <-ctx.Done():
		return nil, &Error{Reason: ReasonCanceled, Transient: true, Err: ctx.Err()}
	}
}

// refreshAsync starts at most one background refresh.
func (p *clientCredentialsProvider) refreshAsync(ctx context.Context, now time.Time) {
	if p.refreshing.Load() || now.UnixNano() < p.retryAfter.Load() {
		return
	}
	if !p.refreshing.CompareAndSwap(false, true) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		r := <-p.sf.DoChan(sfKey, func() (any, error) { return p.fetch(ctx) })
		if r.Err != nil {
			p.retryAfter.Store(p.now().Add(retryBackoff).UnixNano())
			p.log.Warn("outbound: background token refresh failed; using current token",
				"client_id", p.clientID, "error", r.Err)
		}
		p.refreshing.Store(false)
		if p.afterRefresh != nil {
			p.afterRefresh()
		}
	}()
}

// fetch obtains a new token unless another fetch just stored one. It runs
// inside singleflight and ignores the caller's cancellation.
func (p *clientCredentialsProvider) fetch(ctx context.Context) (*cachedToken, error) {
	start := p.now()
	if c := p.cur.Load(); c != nil && start.Before(c.refreshAt) {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.hc)

	cc := clientcredentials.Config{
		ClientID:       p.clientID,
		ClientSecret:   p.clientSecret.Reveal(),
		TokenURL:       p.tokenURL,
		Scopes:         p.scopes,
		EndpointParams: p.params,
		AuthStyle:      p.authStyle,
	}
	tok, err := cc.Token(ctx)
	if err != nil {
		e := classify(err)
		p.log.Warn("outbound: token request failed", "client_id", p.clientID,
			"reason", e.Reason, "transient", e.Transient, "error", e)
		return nil, e
	}
	c, err := p.build(tok, start)
	if err != nil {
		p.log.Warn("outbound: token response unusable", "client_id", p.clientID, "error", err)
		return nil, err
	}
	p.cur.Store(c)
	p.log.Debug("outbound: token fetched", "client_id", p.clientID,
		"expires_at", c.cred.ExpiresAt, "refresh_at", c.refreshAt)
	return c, nil
}

// build turns a token into a cached credential. start is when the request
// was sent, so the computed expiry errs on the early side.
func (p *clientCredentialsProvider) build(tok *oauth2.Token, start time.Time) (*cachedToken, error) {
	invalid := func(msg string) error {
		return &Error{Reason: ReasonTokenInvalidResponse, Err: errors.New(msg)}
	}
	if tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") {
		return nil, invalid("token_type is not Bearer")
	}
	if checkHeaderSecret(tok.AccessToken) != nil {
		return nil, invalid("access_token is not a valid header value")
	}
	var lifetime time.Duration
	switch secs := expiresIn(tok); {
	case secs > 0:
		lifetime = time.Duration(secs) * time.Second
	case !tok.Expiry.IsZero(): // the library computed it with the wall clock
		lifetime = time.Until(tok.Expiry)
		if lifetime <= 0 {
			return nil, invalid("token already expired")
		}
	default:
		lifetime = defaultLifetime
	}
	margin := max(lifetime/5, p.refreshBefore)
	margin = min(margin, lifetime/2)
	skew := min(maxExpirySkew, lifetime/10)
	expiresAt := start.Add(lifetime)

	scopes := p.scopes
	if s, ok := tok.Extra("scope").(string); ok && strings.TrimSpace(s) != "" {
		scopes = strings.Fields(s)
	}
	value := tok.AccessToken
	if p.bearer {
		value = "Bearer " + value
	}
	return &cachedToken{
		cred: &Credential{
			Mode:      ModeServiceAccount,
			Headers:   []Header{{Name: p.header, Value: value}},
			Subject:   p.clientID,
			Audience:  p.audience,
			Scopes:    scopes,
			ExpiresAt: expiresAt,
		},
		refreshAt:   expiresAt.Add(-margin),
		usableUntil: expiresAt.Add(-skew),
	}, nil
}

// expiresIn reads expires_in from the raw response (clientcredentials drops
// Token.ExpiresIn), so expiry can be computed on the provider's clock.
func expiresIn(tok *oauth2.Token) int64 {
	const maxSecs = 10 * 365 * 24 * 3600 // keep Duration arithmetic in range
	var n int64
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		if v > 0 && v <= maxSecs {
			n = int64(v)
		}
	case int64: // form-encoded responses
		n = v
	case string:
		n, _ = strconv.ParseInt(v, 10, 64)
	}
	if n <= 0 || n > maxSecs {
		return 0
	}
	return n
}
