package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/config"
	"github.com/mcpauthz/mcpauthz/server/connect"
	"github.com/mcpauthz/mcpauthz/server/extproc"
)

// This file wires per-user connections (INDIVIDUAL mode and
// admin-authorized OAuth service accounts): the manager that keeps the
// provider tokens, the connect pages, and the Check path's "authorize at
// <link>" answer.

// needsConnections reports whether any server's credential (default or
// option) is backed by a stored OAuth connection.
func needsConnections(cfg *config.Config) bool {
	for _, sc := range cfg.Servers {
		for _, c := range append([]outbound.Config{sc.Credential}, sc.CredentialOptions...) {
			if _, _, ok := c.Connection(); ok {
				return true
			}
		}
	}
	return false
}

// newConnections builds the manager and registers every connection-backed
// server; stored connections of servers whose mode changed are revoked.
func newConnections(ctx context.Context, cfg *config.Config, st store.Store, ring store.Cipher, deps Deps, s *Service) (*connections.Manager, error) {
	m, err := connections.New(ctx, cfg.Connections, connections.Options{
		Store: st, Cipher: ring, HTTPClient: deps.HTTPClient, Now: deps.Now, Logger: s.log,
		Audit: func(e connections.Event) {
			s.log.Info("connection event", "type", e.Type, "server", e.Key.Server, "org", e.Key.Org,
				"user_key", e.Key.UserKey, "actor", e.Actor.Kind, "from", string(e.From), "to", string(e.To), "reason", e.Reason)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("server: connections: %w", err)
	}
	for _, sc := range cfg.Servers {
		for _, c := range append([]outbound.Config{sc.Credential}, sc.CredentialOptions...) {
			if mode, p, ok := c.Connection(); ok {
				if err := m.Register(sc.ID, mode, p); err != nil {
					return nil, fmt.Errorf("server: servers %s: connection: %w", sc.ID, err)
				}
			}
		}
	}
	if err := m.Reconcile(ctx); err != nil {
		return nil, fmt.Errorf("server: connections: reconcile: %w", err)
	}
	return m, nil
}

// newConnectHandler builds the /connect/ pages.
func newConnectHandler(ctx context.Context, cfg *config.Config, m *connections.Manager, v tokenVerifier, deps Deps, s *Service) (*connect.Handler, error) {
	if cfg.Connect == nil {
		return nil, errors.New("server: connect: servers use per-user connections; configure the connect block (login issuer and client)")
	}
	iv, ok := v.(*identity.Verifier)
	if !ok {
		return nil, errors.New("server: connect: the login needs the identity verifier")
	}
	var loginIssuer string
	for _, is := range cfg.Identity.Issuers {
		if is.Name == cfg.Connect.Login.Issuer {
			loginIssuer = is.Issuer
		}
	}
	var infos []connect.ServerInfo
	for _, sc := range cfg.Servers {
		for _, c := range append([]outbound.Config{sc.Credential}, sc.CredentialOptions...) {
			if mode, p, ok := c.Connection(); ok {
				infos = append(infos, connect.ServerInfo{ID: sc.ID, Name: orDefault(sc.Name, sc.ID), Mode: mode, ProviderOrigin: originOf(p.AuthorizationURL)})
				break
			}
		}
	}
	return connect.New(ctx, *cfg.Connect, connect.Options{
		PublicURL: cfg.Connections.PublicURL, LoginIssuerURL: loginIssuer, Servers: infos, Manager: m,
		Users: idTokenUsers{v: iv}, Logger: s.log, Now: deps.Now, HTTPClient: deps.HTTPClient,
	})
}

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// idTokenUsers adapts the identity verifier to connect.Users, so the user
// signed in to the pages has the Check path's user key.
type idTokenUsers struct{ v *identity.Verifier }

var _ connect.Users = idTokenUsers{}

func (u idTokenUsers) FromIDToken(ctx context.Context, issuerName, rawIDToken, clientID, nonce string) (connect.User, error) {
	p, err := u.v.PrincipalFromIDToken(ctx, issuerName, rawIDToken, clientID, nonce)
	if err != nil {
		return connect.User{}, err
	}
	name, _ := p.Claims["name"].(string)
	if name == "" {
		name, _ = p.Claims["preferred_username"].(string)
	}
	return connect.User{Org: p.Org, UserKey: p.UserKey, Subject: upstreamSubject(p), Name: orDefault(name, p.Subject), Roles: p.Roles}, nil
}

// connectionKey is the stored connection a credential mode of srv uses for
// p: the user's own (individual) or the organization's (service_account
// with oauth). ok is false for modes not backed by a connection.
func (srv *mcpServer) connectionKey(mode string, p *identity.Principal) (connections.Key, bool) {
	m, ok := srv.connModes[orDefault(mode, string(srv.credMode))]
	if !ok || p == nil {
		return connections.Key{}, false
	}
	if m == connections.ModeServiceAccount {
		return connections.Key{Org: p.Org, Server: srv.id}, true
	}
	return connections.Key{Org: p.Org, UserKey: p.UserKey, Server: srv.id}, true
}

// connKeyString encodes a connection key for ext_proc metadata.
func connKeyString(k connections.Key) string {
	return url.PathEscape(k.Org) + "/" + url.PathEscape(k.UserKey) + "/" + url.PathEscape(k.Server)
}

func parseConnKey(s string) (connections.Key, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return connections.Key{}, false
	}
	var k connections.Key
	var err error
	if k.Org, err = url.PathUnescape(parts[0]); err != nil {
		return k, false
	}
	if k.UserKey, err = url.PathUnescape(parts[1]); err != nil {
		return k, false
	}
	if k.Server, err = url.PathUnescape(parts[2]); err != nil {
		return k, false
	}
	return k, true
}

// CodeURLElicitationRequired is MCP 2025-11-25's URLElicitationRequiredError.
const CodeURLElicitationRequired = -32042

// authorizeDenial answers a call whose connection is missing or not
// AUTHORIZED the way MCP clients show it: a JSON-RPC error (HTTP 200, so
// SDKs surface the error object rather than a transport failure) echoing
// the request id, whose message says what to do and carries mcpauthz's own
// connect link; -32042 URL elicitation when the session's initialize
// declared elicitation.url.
func (s *Service) authorizeDenial(ctx context.Context, srv *mcpServer, na *connections.NeedsAuthorizationError, key connections.Key, sid string) *denial {
	link, err := s.connections.Link(ctx, key)
	if err != nil {
		return &denial{status: http.StatusServiceUnavailable, reason: "connect_link_unavailable",
			message: "this tool needs your account to be connected, but the connect link could not be made right now; try again"}
	}
	name := orDefault(srv.cfg.Name, srv.id)
	status := string(na.Connection.Status)
	if status == "" {
		status = string(connections.StatusNeedsAuthorization)
	}
	who := "your"
	if key.UserKey == "" {
		who = "your organization's (an administrator must connect it)"
	}
	msg := fmt.Sprintf("Authorization required: connect %s %s account at %s, then retry.", who, name, link)
	d := &denial{status: http.StatusOK, reason: "connection_" + strings.ToLower(status), message: msg, code: codeForbidden,
		data: map[string]any{"url": link, "server": srv.id, "status": status}}
	if sid != "" && s.caps != nil {
		if c, ok := s.caps.Lookup(extproc.SessionKey(srv.id, sid)); ok && c.ElicitationURL {
			d.code = CodeURLElicitationRequired
			d.data = map[string]any{"elicitations": []map[string]any{{
				"mode": "url", "elicitationId": elicitationID(link), "url": link,
				"message": fmt.Sprintf("Connect %s %s account to continue.", who, name),
			}}}
		}
	}
	return d
}

// elicitationID is stable per link, so a client retrying sees one id.
func elicitationID(link string) string {
	u, err := url.Parse(link)
	if err == nil {
		if id := u.Query().Get("link"); id != "" {
			return id
		}
	}
	b, _ := json.Marshal(link)
	return shortHash(string(b))
}

// connectionDenial turns a credential error into the authorize-at-link
// answer when it says the caller must (re)connect; nil otherwise.
func (s *Service) connectionDenial(ctx context.Context, err error, srv *mcpServer, mode string, p *identity.Principal, sid string) *denial {
	var na *connections.NeedsAuthorizationError
	if s.connections == nil || !errors.As(err, &na) {
		return nil
	}
	key, ok := srv.connectionKey(mode, p)
	if !ok {
		key = na.Connection.Key
	}
	return s.authorizeDenial(ctx, srv, na, key, sid)
}

// connectionInput is input.connection: the status and scopes of the stored
// connection the server's connection-backed credential would use for p
// (the default mode when it is one, else the first option that is). A
// store failure reads as ERROR, so a policy keyed on it fails closed.
func (s *Service) connectionInput(ctx context.Context, srv *mcpServer, p *identity.Principal) *policy.Connection {
	if s.connections == nil || len(srv.connModes) == 0 || p == nil {
		return nil
	}
	mode := string(srv.credMode)
	if _, ok := srv.connModes[mode]; !ok {
		for _, oc := range srv.cfg.CredentialOptions {
			if _, ok := srv.connModes[string(oc.Mode)]; ok {
				mode = string(oc.Mode)
				break
			}
		}
	}
	key, ok := srv.connectionKey(mode, p)
	if !ok {
		return nil
	}
	c, err := s.connections.Status(ctx, key)
	in := &policy.Connection{Mode: srv.connModes[mode], Status: string(c.Status), Scopes: c.Scopes}
	if err != nil {
		in.Status = string(connections.StatusError)
	}
	if in.Status == "" {
		in.Status = string(connections.StatusNeedsAuthorization)
	}
	return in
}
