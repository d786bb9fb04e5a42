// Package outbound produces the credential the UPSTREAM MCP server receives
// for a call that policy allowed.
//
// Each MCP server is configured with one [Mode]:
//
//   - public: nothing is attached.
//   - static: fixed headers (for example X-API-Key) whose values come from
//     secret references.
//   - service_account: one organisation-wide credential, either a static
//     secret sent as a header or an OAuth 2.0 client-credentials access token
//     (RFC 6749 section 4.4) that is cached, refreshed in the background
//     before it expires, and fetched at most once at a time (singleflight).
//   - delegated: a short-lived token for this upstream only, naming the user
//     (sub) and the agent acting for them (act), limited to the scopes the
//     policy granted for the call. It is minted by mcpauthz's built-in
//     issuer (package mint) or obtained from an external security token
//     service by RFC 8693 token exchange or Entra on-behalf-of (package
//     exchange). Tokens are cached per (subject token, actor, audience,
//     scopes) until shortly before they expire; concurrent misses collapse
//     into one issuance. No path ever forwards the caller's own token.
//   - individual: the calling user's own provider access token, which the
//     user granted once through the connect flow and the connections
//     manager (package connections) stores and refreshes. An agent acting
//     for a user uses that user's connection; an agent alone is refused
//     ([ReasonNoUser]); a missing connection is a [ReasonNeedsAuthorization]
//     error wrapping *connections.NeedsAuthorizationError.
//     service_account.oauth is the same with one organization-wide
//     connection an admin authorized.
//
// [New] turns a validated [Config] into a [Provider]. Callers only ever see
// the Provider interface and a [Request] made of plain values, so new modes
// slot in as new Provider implementations without changing callers (see
// [New] for the extension point).
//
// Secrets are resolved once, in New. They never appear in errors, in
// String/GoString/Format output of [Header] or [Credential], in JSON, or in
// log/slog output ([Credential.LogValue] logs header names only).
//
// Every Provider returned by New is safe for concurrent use. On the hot path
// (static, or a warm client-credentials token) Credential does not allocate:
// it returns a shared, pre-built *Credential that callers must treat as
// read-only.
package outbound

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Mode selects how the upstream credential is obtained.
type Mode string

// The credential modes.
const (
	ModePublic         Mode = "public"
	ModeStatic         Mode = "static"
	ModeServiceAccount Mode = "service_account"
	ModeDelegated      Mode = "delegated"
	ModeIndividual     Mode = "individual"
)

// Request describes one call that needs an upstream credential. It holds
// plain values only so this package imports no other mcpauthz package.
// The modes implemented today ignore it; delegated and individual modes
// will key on Subject/UserKey/Audience.
type Request struct {
	ServerID string // the MCP server (route context extension)
	Audience string // the upstream's resource URL

	// Verified principal.
	Subject string
	UserKey string
	Org     string
	Kind    string // human | agent_for_user | agent | anonymous
	Actor   string // current actor subject, if any, as in the token
	// QualifiedSubject and QualifiedActor name the subject and actor to the
	// upstream: qualified by the issuer's user namespace so the same sub
	// from two directories never reads as one user (identity.Principal).
	// Empty: Subject and Actor are used. Tokens mcpauthz mints carry them;
	// comparisons with what an external STS issues use Subject and Actor.
	QualifiedSubject string
	QualifiedActor   string

	ClientID string
	Scopes   []string // downstream scopes the policy granted for this call

	// The current actor's client and issuer, and the prior actors (nested
	// act claims), outermost first, their subjects qualified.
	ActorClientID string
	ActorIssuer   string
	Chain         []Actor

	// SubjectToken is the caller's verified inbound token. It is used ONLY
	// by delegated token exchange and is never sent upstream.
	SubjectToken string
	// SubjectTokenHash is SHA-256(SubjectToken), computed once by the
	// verifier; delegated tokens are cached under it. Zero without a token.
	SubjectTokenHash [32]byte
	// SubjectExpiresAt is when the caller's token expires (zero without
	// one). A delegated token never expires after it, and is never used
	// after it.
	SubjectExpiresAt time.Time
	// Headers are the inbound request headers (lower-case names), read-only.
	// Only a delegated server taking the actor token from the caller reads
	// them.
	Headers map[string]string
}

// Header is one header to set on the upstream request. Name is lower-case
// (as Envoy carries header names); Value is a secret and is redacted by
// every printing method of Header.
type Header struct {
	Name  string
	Value string
}

// String returns "name: [redacted]".
func (h Header) String() string { return h.Name + ": " + redacted }

// GoString returns the same as String.
func (h Header) GoString() string { return h.String() }

// Format prints the header name with a redacted value for every verb.
func (h Header) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, h.String()) }

// MarshalJSON encodes the name and a redacted value.
func (h Header) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"name":%q,"value":%q}`, h.Name, redacted), nil
}

// LogValue logs the header name only.
func (h Header) LogValue() slog.Value { return slog.StringValue(h.Name) }

const redacted = "[redacted]"

// Credential is what the upstream receives for one call.
//
// A *Credential returned by a Provider may be shared between concurrent
// calls and cached: it is read-only. Do not modify it or its slices.
type Credential struct {
	Mode    Mode
	Headers []Header // headers to set upstream; values are secrets

	// Subject, Actor and Audience say whom the credential represents,
	// through which agent, and for which upstream, for decision logs. They
	// are not secret.
	Subject  string
	Actor    string
	Audience string
	Scopes   []string
	// ExpiresAt is when the credential stops being valid; zero for
	// credentials that do not expire (public, static).
	ExpiresAt time.Time
}

// LogValue implements slog.LogValuer: mode, subject, audience, scopes,
// expiry and header NAMES only.
func (c *Credential) LogValue() slog.Value {
	if c == nil {
		return slog.StringValue("<nil>")
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("mode", string(c.Mode)))
	if c.Subject != "" {
		attrs = append(attrs, slog.String("subject", c.Subject))
	}
	if c.Actor != "" {
		attrs = append(attrs, slog.String("actor", c.Actor))
	}
	if c.Audience != "" {
		attrs = append(attrs, slog.String("audience", c.Audience))
	}
	if len(c.Scopes) > 0 {
		attrs = append(attrs, slog.Any("scopes", c.Scopes))
	}
	if len(c.Headers) > 0 {
		attrs = append(attrs, slog.Any("headers", c.HeaderNames()))
	}
	if !c.ExpiresAt.IsZero() {
		attrs = append(attrs, slog.Time("expires_at", c.ExpiresAt))
	}
	return slog.GroupValue(attrs...)
}

// HeaderNames returns the names of the headers, in order.
func (c *Credential) HeaderNames() []string {
	if c == nil {
		return nil
	}
	names := make([]string, len(c.Headers))
	for i, h := range c.Headers {
		names[i] = h.Name
	}
	return names
}

// String describes the credential without header values.
func (c *Credential) String() string {
	if c == nil {
		return "<nil>"
	}
	var b strings.Builder
	b.WriteString("outbound.Credential{mode=")
	b.WriteString(string(c.Mode))
	if c.Subject != "" {
		b.WriteString(" subject=" + c.Subject)
	}
	if c.Actor != "" {
		b.WriteString(" actor=" + c.Actor)
	}
	if c.Audience != "" {
		b.WriteString(" audience=" + c.Audience)
	}
	if len(c.Scopes) > 0 {
		b.WriteString(" scopes=" + strings.Join(c.Scopes, ","))
	}
	if len(c.Headers) > 0 {
		b.WriteString(" headers=" + strings.Join(c.HeaderNames(), ","))
	}
	b.WriteString("}")
	return b.String()
}

// GoString is the same as String.
func (c *Credential) GoString() string { return c.String() }

// Provider returns the upstream credential for one call.
//
// Implementations are safe for concurrent use. The returned *Credential may
// be shared and must be treated as read-only. Errors are *Error.
// req must not be nil.
type Provider interface {
	Credential(ctx context.Context, req *Request) (*Credential, error)
}

// Options carries dependencies for New. All fields are optional.
type Options struct {
	// HTTPClient is the base client for token endpoint calls. New copies
	// it and enforces a timeout, refuses redirects and limits response
	// bodies to 1 MiB. Default: a client on http.DefaultTransport.
	HTTPClient *http.Client
	// Logger receives refresh events (never secrets). Default: discard.
	Logger *slog.Logger
	// Now is the clock used for token expiry. Default: time.Now.
	Now func() time.Time
	// Minter is mcpauthz's built-in token issuer, needed by delegated
	// servers with issuer builtin.
	Minter Minter
	// Connections hands out stored connection tokens, needed by mode
	// individual and service_account.oauth (a *connections.Manager on
	// which each such server was registered: see Config.Connection).
	Connections ConnectionSource
}

// New validates cfg, resolves its secrets and returns the Provider for
// cfg.Mode. Secret resolution errors name the reference (env var or path),
// never the value. ctx is not retained.
//
// Extension point: a new mode (delegated, individual, ...) adds its own
// config block to Config, its checks to Config.Validate and one case to the
// switch below that returns its Provider implementation. Callers hold a
// Provider and a Request and do not change. There is deliberately no global
// registry.
func New(ctx context.Context, cfg Config, opts Options) (Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("outbound: invalid config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var (
		p   Provider
		err error
	)
	switch cfg.Mode {
	case ModePublic:
		p = publicProvider{cred: &Credential{Mode: ModePublic}}
	case ModeStatic:
		p, err = newStatic(cfg.Static)
	case ModeServiceAccount:
		if sa := cfg.ServiceAccount; sa.OAuth != nil {
			p, err = newConnectionProvider(ModeServiceAccount, sa.OAuth.Header, sa.OAuth.Format, opts.Connections)
		} else {
			p, err = newServiceAccount(sa, opts)
		}
	case ModeIndividual:
		p, err = newConnectionProvider(ModeIndividual, cfg.Individual.Header, cfg.Individual.Format, opts.Connections)
	case ModeDelegated:
		p, err = newDelegated(ctx, cfg.Delegated, opts)
	default: // unreachable after Validate
		err = fmt.Errorf("mode %q is not supported", cfg.Mode)
	}
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	return p, nil
}

// publicProvider attaches nothing.
type publicProvider struct{ cred *Credential }

var _ Provider = publicProvider{}

func (p publicProvider) Credential(context.Context, *Request) (*Credential, error) {
	return p.cred, nil
}

// upstreamSubject is the subject named to the upstream.
func (r *Request) upstreamSubject() string {
	if r.QualifiedSubject != "" {
		return r.QualifiedSubject
	}
	return r.Subject
}

// upstreamActor is the current actor named to the upstream.
func (r *Request) upstreamActor() string {
	if r.QualifiedActor != "" {
		return r.QualifiedActor
	}
	return r.Actor
}
