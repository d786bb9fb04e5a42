package exchange

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Redacted is what a Token prints instead of its access token.
const Redacted = "[redacted]"

// Token is a token issued by the STS. AccessToken is the only secret: every
// printing and encoding path (fmt verbs, encoding/json, log/slog) shows
// [Redacted] in its place. A Token is not modified after Exchange returns
// it and may be shared between goroutines for reading.
type Token struct {
	AccessToken     string
	TokenType       string         // "Bearer" (or N_A for a jwt issued_token_type)
	IssuedTokenType string         // RFC 8693 issued_token_type; TokenTypeAccessToken for entra_obo
	ExpiresAt       time.Time      // from expires_in, the JWT exp, whichever is earlier, else DefaultLifetime
	Scopes          []string       // the response's scope, or the requested scopes when it has none
	Claims          map[string]any // decoded (not necessarily verified) claims when the token is a JWT; nil otherwise
}

// String describes the token without the access token.
func (t Token) String() string {
	return fmt.Sprintf("exchange.Token{access_token=%s token_type=%s issued_token_type=%s expires_at=%s scopes=%q sub=%q}",
		Redacted, t.TokenType, t.IssuedTokenType, t.ExpiresAt.UTC().Format(time.RFC3339), t.Scopes, t.claim("sub"))
}

// GoString is String, so %#v does not reveal the access token.
func (t Token) GoString() string { return t.String() }

// Format prints String for every verb.
func (t Token) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }

// MarshalJSON encodes the token with the access token redacted.
func (t Token) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		AccessToken     string         `json:"access_token"`
		TokenType       string         `json:"token_type,omitempty"`
		IssuedTokenType string         `json:"issued_token_type,omitempty"`
		ExpiresAt       time.Time      `json:"expires_at"`
		Scopes          []string       `json:"scopes,omitempty"`
		Claims          map[string]any `json:"claims,omitempty"`
	}{Redacted, t.TokenType, t.IssuedTokenType, t.ExpiresAt, t.Scopes, t.Claims})
}

// LogValue logs the token's metadata, never the access token.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_token", Redacted),
		slog.String("token_type", t.TokenType),
		slog.String("issued_token_type", t.IssuedTokenType),
		slog.Time("expires_at", t.ExpiresAt),
		slog.String("scope", strings.Join(t.Scopes, " ")),
		slog.String("sub", t.claim("sub")),
	)
}

func (t Token) claim(name string) string {
	s, _ := t.Claims[name].(string)
	return s
}

// Actor returns act.sub of the issued token ("" when there is none).
func (t Token) Actor() string {
	act, _ := t.Claims["act"].(map[string]any)
	s, _ := act["sub"].(string)
	return s
}

var (
	_ fmt.Stringer   = Token{}
	_ fmt.GoStringer = Token{}
	_ fmt.Formatter  = Token{}
	_ slog.LogValuer = Token{}
	_ json.Marshaler = Token{}
)
