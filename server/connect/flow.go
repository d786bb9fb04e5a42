package connect

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// wrongAccount is the phishing-defence refusal: the page never says whose
// link it was.
const wrongAccount = "This link was created for another account — sign in as that account or ask for a new link."

// userServer looks up a server the signed-in user connects personally.
func (h *Handler) userServer(id string) (ServerInfo, bool) {
	s, ok := h.servers[id]
	return s, ok && s.Mode == ModeIndividual
}

// sharedServer looks up a server whose connection is the organization's.
func (h *Handler) sharedServer(id string) (ServerInfo, bool) {
	s, ok := h.servers[id]
	return s, ok && s.Mode == ModeServiceAccount
}

// serverInfo returns a server's configuration, or a stand-in named by its
// id for a server that is no longer configured.
func (h *Handler) serverInfo(id string) (ServerInfo, bool) {
	if s, ok := h.servers[id]; ok {
		return s, true
	}
	return ServerInfo{ID: id, Name: id}, false
}

// serveList is the users' "Tool authorizations" page: every MCP server, in
// config order, with the signed-in user's status and the actions that fit
// it; then the user's own connections to servers that no longer take
// personal connections (revoked by a mode switch, say, with the reason in
// words); then the servers the organization connects once for everyone.
func (h *Handler) serveList(w http.ResponseWriter, r *http.Request) {
	s := h.requireLogin(w, r)
	if s == nil {
		return
	}
	conns, err := h.opts.Manager.List(r.Context(), Filter{Org: s.Org, UserKey: s.UserKey})
	var shared []Connection
	if err == nil && h.hasShared() {
		shared, err = h.opts.Manager.List(r.Context(), Filter{Org: s.Org, ServiceAccounts: true})
	}
	if err != nil {
		h.log.Error("connect: list connections", "org", s.Org, "user_key", s.UserKey, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Connections are unavailable", "mcpauthz could not read your connections. Try again in a minute.", "/connect/")
		return
	}
	own := map[string]Connection{}
	for _, c := range conns {
		// Belt and braces: only this user's records, whatever List returned.
		if c.Key.Org == s.Org && c.Key.UserKey == s.UserKey && s.UserKey != "" {
			own[c.Key.Server] = c
		}
	}
	org := map[string]Connection{}
	for _, c := range shared {
		if c.Key.Org == s.Org && c.Key.UserKey == "" {
			org[c.Key.Server] = c
		}
	}
	d := pageData{Title: "Tool authorizations"}
	for _, id := range h.order {
		if srv := h.servers[id]; srv.Mode == ModeIndividual {
			d.Servers = append(d.Servers, h.view(srv, own[id], forUser))
			delete(own, id)
		}
	}
	// The rest of the user's records: servers no longer in individual mode.
	for _, id := range sortedKeys(own) {
		srv, _ := h.serverInfo(id)
		v := h.view(srv, own[id], forUser)
		v.Retired, v.CanConnect, v.Primary = true, false, false
		v.Mode = "No longer a personal connection"
		d.Servers = append(d.Servers, v)
	}
	for _, id := range h.order {
		if srv := h.servers[id]; srv.Mode == ModeServiceAccount {
			v := h.view(srv, org[id], forOrg)
			v.CanConnect, v.CanRevoke, v.Primary = false, false, false
			d.Shared = append(d.Shared, v)
		}
	}
	h.render(w, r, http.StatusOK, "list.html", s, d)
}

func (h *Handler) hasShared() bool {
	for _, s := range h.servers {
		if s.Mode == ModeServiceAccount {
			return true
		}
	}
	return false
}

// serveServer shows one server with a Connect button (proactive connect).
func (h *Handler) serveServer(w http.ResponseWriter, r *http.Request) {
	s := h.requireLogin(w, r)
	if s == nil {
		return
	}
	srv, ok := h.userServer(r.PathValue("server"))
	if !ok {
		h.serveNotFound(w, r)
		return
	}
	conns, err := h.opts.Manager.List(r.Context(), Filter{Org: s.Org, UserKey: s.UserKey, Server: srv.ID})
	if err != nil {
		h.log.Error("connect: list connections", "server", srv.ID, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Connections are unavailable", "mcpauthz could not read your connection. Try again in a minute.", "/connect/")
		return
	}
	var c Connection
	for _, x := range conns {
		if x.Key == (Key{Org: s.Org, UserKey: s.UserKey, Server: srv.ID}) {
			c = x
		}
	}
	v := h.view(srv, c, forUser)
	h.render(w, r, http.StatusOK, "server.html", s, pageData{Title: srv.Name, Server: &v})
}

// serveConnect (POST /connect/{server}) starts a proactive connect.
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request) {
	s := h.postSession(w, r)
	if s == nil {
		return
	}
	srv, ok := h.userServer(r.PathValue("server"))
	if !ok {
		h.serveNotFound(w, r)
		return
	}
	h.start(w, r, s, Key{Org: s.Org, UserKey: s.UserKey, Server: srv.ID}, "", "/connect/")
}

// serveRevoke (POST /connect/{server}/revoke) revokes the user's own
// connection: to a server in individual mode, or one the user still holds
// for a server that is no longer.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request) {
	s := h.postSession(w, r)
	if s == nil {
		return
	}
	id := r.PathValue("server")
	key := Key{Org: s.Org, UserKey: s.UserKey, Server: id}
	if _, ok := h.userServer(id); !ok {
		conns, err := h.opts.Manager.List(r.Context(), Filter{Org: s.Org, UserKey: s.UserKey, Server: id})
		if err != nil {
			h.log.Error("connect: list connections", "server", id, "err", err)
			h.renderError(w, r, http.StatusServiceUnavailable, "Revoking failed", "mcpauthz could not read your connection. Try again.", "/connect/")
			return
		}
		if !slices.ContainsFunc(conns, func(c Connection) bool { return c.Key == key }) {
			h.serveNotFound(w, r)
			return
		}
	}
	err := h.opts.Manager.Revoke(r.Context(), key, Actor{Kind: "user", ID: s.UserKey}, "user_revoked")
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.log.Error("connect: revoke", "org", s.Org, "user_key", s.UserKey, "server", id, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Revoking failed", "mcpauthz could not revoke the connection. Try again.", "/connect/")
		return
	}
	h.log.Info("connect: revoked by user", "org", s.Org, "user_key", s.UserKey, "server", id)
	http.Redirect(w, r, "/connect/", http.StatusSeeOther)
}

// postSession returns the session of a POST that passes the Origin and CSRF
// checks, or answers 403 and returns nil.
func (h *Handler) postSession(w http.ResponseWriter, r *http.Request) *session {
	s := h.session(r)
	if s == nil {
		h.renderError(w, r, http.StatusForbidden, "You are not signed in", "Your session ended. Sign in and try again.", "/connect/login")
		return nil
	}
	if reason := h.checkPOST(r, s); reason != "" {
		h.refusePOST(w, r, s, reason)
		return nil
	}
	return s
}

func (h *Handler) refusePOST(w http.ResponseWriter, r *http.Request, s *session, reason string) {
	h.log.Warn("connect: POST refused", "reason", reason, "path", r.URL.Path, "org", s.Org, "user_key", s.UserKey)
	h.renderError(w, r, http.StatusForbidden, "This request was refused",
		"The form did not come from this site, or it is out of date. Go back, reload the page and try again.", "")
}

// serveStart (GET /connect/start?link=) follows an "authorize at" link: the
// link must have been minted for the signed-in user.
func (h *Handler) serveStart(w http.ResponseWriter, r *http.Request) {
	link := r.URL.Query().Get("link")
	if link == "" || len(link) > 256 || strings.ContainsFunc(link, func(r rune) bool { return r <= ' ' || r > '~' }) {
		h.renderError(w, r, http.StatusBadRequest, "This link is not valid", "Go back to your MCP client and try again to get a new link.", "")
		return
	}
	s := h.requireLogin(w, r)
	if s == nil {
		return
	}
	key, err := h.opts.Manager.ResolveLink(r.Context(), link)
	if err != nil {
		h.linkError(w, r, s, err)
		return
	}
	if key.UserKey == "" {
		h.startShared(w, r, s, key, link)
		return
	}
	if key.Org != s.Org || key.UserKey != s.UserKey {
		h.log.Warn("connect: link for another user refused", "signed_in_org", s.Org, "signed_in_user_key", s.UserKey,
			"link_org", key.Org, "link_user_key", key.UserKey, "server", key.Server)
		h.renderError(w, r, http.StatusForbidden, "This link is for another account", wrongAccount, switchAccount(r))
		return
	}
	if _, ok := h.userServer(key.Server); !ok {
		h.renderError(w, r, http.StatusNotFound, "This server is not available", "The MCP server this link was for is no longer set up for personal connections.", "")
		return
	}
	h.start(w, r, s, key, link, "/connect/")
}

// startShared follows a link minted for an organization's service-account
// connection (what a denied call carries when nobody has authorized it):
// only an administrator of that organization may follow it.
func (h *Handler) startShared(w http.ResponseWriter, r *http.Request, s *session, key Key, link string) {
	if key.Org != s.Org || !h.isAdmin(s) {
		h.log.Warn("connect: organization link refused", "signed_in_org", s.Org, "signed_in_user_key", s.UserKey,
			"link_org", key.Org, "server", key.Server, "admin", h.isAdmin(s))
		h.renderError(w, r, http.StatusForbidden, "Only an administrator can connect this",
			"This link connects an account for a whole organization. Ask an administrator of your organization to open it, or sign in as one.", switchAccount(r))
		return
	}
	if _, ok := h.sharedServer(key.Server); !ok {
		h.renderError(w, r, http.StatusNotFound, "This server is not available", "The MCP server this link was for is no longer set up for an organization connection.", "/connect/admin/")
		return
	}
	h.log.Info("connect: organization connection started by admin", "org", s.Org, "admin_user_key", s.UserKey, "server", key.Server, "from_link", true)
	h.start(w, r, s, key, link, "/connect/admin/")
}

// switchAccount is the sign-out page that comes back to this request's URL
// (a link that was not consumed) after signing in as another account.
func switchAccount(r *http.Request) string {
	ret := r.URL.EscapedPath() + "?" + r.URL.RawQuery
	if _, ok := safeReturn(ret); !ok {
		return "/connect/logout"
	}
	return "/connect/logout?return=" + url.QueryEscape(ret)
}

// start creates the flow and sends the browser to the provider; back is the
// page the callback links to afterwards.
func (h *Handler) start(w http.ResponseWriter, r *http.Request, s *session, key Key, link, back string) {
	authURL, err := h.opts.Manager.StartConnect(r.Context(), key, link, back)
	if err != nil {
		h.linkError(w, r, s, err)
		return
	}
	origin, err := originOf(authURL)
	if err != nil {
		h.log.Error("connect: provider authorization URL is not absolute http(s)", "server", key.Server)
		h.renderError(w, r, http.StatusBadGateway, "Connecting failed", "The service's sign-in address is misconfigured. Tell your administrator.", "")
		return
	}
	h.rememberFlow(w, s, key, authURL)
	h.log.Info("connect: flow started", "org", s.Org, "user_key", s.UserKey, "server", key.Server, "from_link", link != "")
	if r.Method == http.MethodPost && !h.knownOrigin(origin) {
		// The page that posted the form did not allow this origin in its
		// CSP form-action, so a redirect would be blocked: offer a link.
		h.addOrigin(origin)
		srv := h.servers[key.Server]
		text := "Sign in there and approve access for " + srv.Name + ". You come back here when you are done."
		if key.UserKey == "" {
			text = "Sign in there with the account your organization uses for " + srv.Name + " and approve access. You come back here when you are done."
		}
		h.render(w, r, http.StatusOK, "continue.html", s, pageData{
			Title: "Continue to " + origin, Heading: "Continue to " + origin,
			Text: text,
			Link: authURL, LinkText: "Continue",
		})
		return
	}
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// linkError renders ResolveLink/StartConnect failures.
func (h *Handler) linkError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	switch {
	case errors.Is(err, ErrForbidden):
		h.log.Warn("connect: start refused by the connections manager", "org", s.Org, "user_key", s.UserKey, "err", err)
		h.renderError(w, r, http.StatusForbidden, "This link is for another account", wrongAccount, switchAccount(r))
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrFlowExpired):
		h.renderError(w, r, http.StatusGone, "This link has expired or was already used",
			"Links work once and for a few minutes. Go back to your MCP client and try again to get a new link, or connect from your connections page.", "")
	default:
		h.log.Error("connect: start", "org", s.Org, "user_key", s.UserKey, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Connecting is unavailable", "mcpauthz could not start the connection. Try again in a minute.", "")
	}
}

// serveCallback (GET /connect/callback) is where the provider sends the
// browser back: the flow completes for the signed-in user only.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) {
	s := h.requireLogin(w, r)
	if s == nil {
		return
	}
	q := r.URL.Query()
	state, code, iss, perr := q.Get("state"), q.Get("code"), q.Get("iss"), q.Get("error")
	if state == "" || len(state) > 256 {
		h.renderError(w, r, http.StatusBadRequest, "This page was opened without a connection attempt",
			"Start connecting from your connections page.", "")
		return
	}
	if perr != "" {
		perr = errorCode(perr)
	}
	signedIn := Key{Org: s.Org, UserKey: s.UserKey}
	fc, haveFlow := h.flowCookie(w, r, state)
	otherUser := haveFlow && (fc.Org != s.Org || fc.UserKey != s.UserKey)
	shared := haveFlow && fc.Shared
	if haveFlow {
		signedIn.Server = fc.Server
	}
	if shared && !otherUser {
		if h.isAdmin(s) {
			// The organization's connection: the flow's key has no user.
			signedIn.UserKey = ""
		} else {
			// No longer an administrator: the manager refuses the user's key.
			otherUser = true
		}
	}
	// Always called, so the state is consumed and the attempt audited, even
	// when the result is already known to be a refusal.
	c, ret, err := h.opts.Manager.CompleteConnect(r.Context(), state, code, iss, perr, signedIn)
	switch {
	case otherUser || (err == nil && (c.Key.Org != s.Org || c.Key.UserKey != signedIn.UserKey)):
		h.log.Warn("connect: callback for another user refused", "org", s.Org, "user_key", s.UserKey)
		h.renderError(w, r, http.StatusForbidden, "This connection was started by another account",
			"Nothing was connected. Sign in as the account that started it, or start again.", "/connect/logout")
	case err != nil || perr != "":
		h.callbackFailed(w, r, s, err, perr, haveFlow)
	default:
		h.callbackConnected(w, r, s, c, ret)
	}
}

// callbackFailed renders a callback that connected nothing: err from
// CompleteConnect, perr the provider's error code (if any), haveFlow
// whether this browser holds the flow's cookie.
func (h *Handler) callbackFailed(w http.ResponseWriter, r *http.Request, s *session, err error, perr string, haveFlow bool) {
	switch {
	case errors.Is(err, ErrFlowExpired), errors.Is(err, ErrNotFound):
		h.renderError(w, r, http.StatusGone, "This connection attempt expired",
			"Connecting must finish within a few minutes. Nothing was connected. Start again from your connections page.", "")
	case errors.Is(err, ErrForbidden):
		h.log.Warn("connect: callback refused", "org", s.Org, "user_key", s.UserKey, "err", err)
		text := "Nothing was connected. It was already used, or the answer did not come from the expected service. Start again from your connections page."
		if !haveFlow {
			text = "Nothing was connected. It was already used, or started by another account or in another browser. Start again from your connections page."
		}
		h.renderError(w, r, http.StatusForbidden, "This connection attempt was refused", text, "")
	case perr != "":
		h.log.Info("connect: provider refused the connection", "org", s.Org, "user_key", s.UserKey, "error", perr)
		status, title := http.StatusBadGateway, "The service did not connect"
		if perr == "access_denied" {
			status, title = http.StatusForbidden, "You declined access"
		}
		h.renderError(w, r, status, title, describeOAuthError(perr), "")
	default:
		h.log.Error("connect: callback", "org", s.Org, "user_key", s.UserKey, "err", err)
		h.renderError(w, r, http.StatusBadGateway, "Connecting failed",
			"The service's answer could not be used. Start again from your connections page.", "")
	}
}

// callbackConnected renders the connection c a callback authorized: the
// organization's (no user key, by an administrator) or the user's, with a
// link back to ret when it is a safe return path.
func (h *Handler) callbackConnected(w http.ResponseWriter, r *http.Request, s *session, c Connection, ret string) {
	srv, _ := h.serverInfo(c.Key.Server)
	if c.Key.UserKey == "" {
		v := h.view(srv, c, forOrg)
		h.log.Info("connect: organization connection authorized by admin", "org", s.Org, "admin_user_key", s.UserKey, "server", c.Key.Server)
		h.render(w, r, http.StatusOK, "message.html", s, pageData{
			Title: "Connected for your organization: " + srv.Name, Heading: "Connected for your organization: " + srv.Name, Kind: "ok", Badge: &v,
			Text: "Everyone in " + orgName(s.Org) + " now uses this connection when they call " + srv.Name + " through mcpauthz.",
			Link: "/connect/admin/" + srv.ID, LinkText: "Back to administration",
		})
		return
	}
	back, ok := safeReturn(ret)
	if !ok {
		back = "/connect/"
	}
	v := h.view(srv, c, forUser)
	h.log.Info("connect: connected", "org", s.Org, "user_key", s.UserKey, "server", c.Key.Server)
	h.render(w, r, http.StatusOK, "message.html", s, pageData{
		Title: "Connected: " + srv.Name, Heading: "Connected: " + srv.Name, Kind: "ok", Badge: &v,
		Text: "Go back to your MCP client and try again: it now works with your account.",
		Link: back, LinkText: "Back to your tool authorizations",
	})
}
