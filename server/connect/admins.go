package connect

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// AdminsConfig names the administrators: people who get /connect/admin/
// for the organization they sign in to. A person is an administrator when
// any rule matches. Empty: nobody is.
type AdminsConfig struct {
	// Subjects are ID token `sub` values of the login issuer.
	Subjects []string `yaml:"subjects"`
	// Roles match the person's roles as the Check path reads them (the
	// login issuer's identity.issuers[].claims.roles path, default
	// `roles`), as the Users adapter reports them in User.Roles.
	Roles []string `yaml:"roles"`
	// Claim names an ID token claim holding a role or group (a string or
	// an array of strings): a top-level claim name (URL-like names such as
	// https://example.com/groups work), else a dotted path into nested
	// objects such as realm_access.roles. Requires Values.
	Claim string `yaml:"claim"`
	// Values: the person is an administrator when Claim holds any of them
	// (exact, case-sensitive match).
	Values []string `yaml:"values"`
}

// validate returns errors naming the field path under connect.admins.
func (c AdminsConfig) validate() []error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("connect.admins.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	bad := func(s string) bool {
		return strings.TrimSpace(s) == "" || len(s) > 512 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
	}
	for field, list := range map[string][]string{"subjects": c.Subjects, "roles": c.Roles, "values": c.Values} {
		for i, v := range list {
			if bad(v) {
				add(fmt.Sprintf("%s[%d]", field, i), "must be a non-empty string without control characters")
			}
		}
	}
	switch {
	case c.Claim != "" && len(c.Values) == 0:
		add("values", "required with claim: the role or group values that make a person an administrator")
	case c.Claim == "" && len(c.Values) > 0:
		add("claim", "required with values: the ID token claim that holds them (e.g. roles or groups)")
	case c.Claim != "" && (bad(c.Claim) || strings.ContainsAny(c.Claim, " \t") || slices.Contains(strings.Split(c.Claim, "."), "")):
		add("claim", "%q is not a claim name or a dotted path of claim names", c.Claim)
	}
	return errs
}

// adminRule decides who is an administrator. Its fingerprint goes into
// sessions, so a changed rule does not keep old sessions' rights.
type adminRule struct {
	cfg         AdminsConfig
	fingerprint string
}

func newAdminRule(c AdminsConfig) adminRule {
	if len(c.Subjects)+len(c.Roles)+len(c.Values) == 0 {
		return adminRule{cfg: c}
	}
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return adminRule{cfg: c, fingerprint: hex.EncodeToString(sum[:8])}
}

// match says whether a person with the verified ID token's sub and claims
// and the adapter's roles is an administrator.
func (a adminRule) match(sub string, roles []string, claims map[string]any) bool {
	if a.fingerprint == "" {
		return false
	}
	if sub != "" && slices.Contains(a.cfg.Subjects, sub) {
		return true
	}
	for _, r := range roles {
		if r != "" && slices.Contains(a.cfg.Roles, r) {
			return true
		}
	}
	if a.cfg.Claim != "" {
		for _, v := range claimStrings(claims, a.cfg.Claim) {
			if slices.Contains(a.cfg.Values, v) {
				return true
			}
		}
	}
	return false
}

// claimStrings reads a string or an array of strings at name: the
// top-level claim of that exact name, else the dotted path. Anything else
// reads as nothing.
func claimStrings(claims map[string]any, name string) []string {
	v, ok := claims[name]
	if !ok {
		var cur any = claims
		for _, part := range strings.Split(name, ".") {
			m, isMap := cur.(map[string]any)
			if !isMap {
				return nil
			}
			if cur, ok = m[part]; !ok {
				return nil
			}
		}
		v = cur
	}
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return t
	}
	return nil
}

// isAdmin says whether the session's person administers its organization.
func (h *Handler) isAdmin(s *session) bool {
	return s != nil && s.Admin && h.admins.fingerprint != "" && s.AdminRule == h.admins.fingerprint
}

// requireAdmin returns the session of an administrator, or answers (a
// redirect to sign in, or 403) and returns nil.
func (h *Handler) requireAdmin(w http.ResponseWriter, r *http.Request) *session {
	s := h.requireLogin(w, r)
	if s == nil {
		return nil
	}
	if !h.isAdmin(s) {
		h.refuseAdmin(w, r, s)
		return nil
	}
	return s
}

// postAdmin returns the session of an administrator's POST that passes the
// Origin and CSRF checks, or answers 403 and returns nil.
func (h *Handler) postAdmin(w http.ResponseWriter, r *http.Request) *session {
	s := h.postSession(w, r)
	if s == nil {
		return nil
	}
	if !h.isAdmin(s) {
		h.refuseAdmin(w, r, s)
		return nil
	}
	return s
}

func (h *Handler) refuseAdmin(w http.ResponseWriter, r *http.Request, s *session) {
	h.log.Warn("connect: administration refused to a non-administrator", "method", r.Method, "path", r.URL.Path, "org", s.Org, "user_key", s.UserKey)
	text := "This page is for administrators of your organization. If you were made one recently, sign out and sign in again."
	if h.admins.fingerprint == "" {
		text = "No administrators are configured for these pages (connect.admins)."
	}
	h.renderError(w, r, http.StatusForbidden, "Only administrators can open this page", text, "")
}

// serveAdminNotFound answers the unknown /connect/admin/ paths: 403 to
// non-administrators (nothing about what exists), 404 to administrators.
func (h *Handler) serveAdminNotFound(w http.ResponseWriter, r *http.Request) {
	s := h.session(r)
	if s == nil || !h.isAdmin(s) {
		if s == nil {
			h.renderError(w, r, http.StatusForbidden, "You are not signed in", "Sign in as an administrator to open this page.", "/connect/login")
			return
		}
		h.refuseAdmin(w, r, s)
		return
	}
	h.serveNotFound(w, r)
}

// Caps of the administrators' pages (beyond them the page says so).
const (
	// maxAdminRows is how many people one server's page lists.
	maxAdminRows = 500
	// maxEventUsers is how many people's histories (the most recently
	// changed first) the recent events and the organization's download
	// read: connections.Manager keeps history per person.
	maxEventUsers = 50
	// maxAdminEvents is how many events the overview shows.
	maxAdminEvents = 40
)

// orgConns returns the organization's records (people's and the
// organization's own), whatever else List returned.
func (h *Handler) orgConns(r *http.Request, org string, f Filter) ([]Connection, error) {
	f.Org = org
	all, err := h.opts.Manager.List(r.Context(), f)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(c Connection) bool { return c.Key.Org != org }), nil
}

// serveAdmin (GET /connect/admin/) is the administrators' overview.
func (h *Handler) serveAdmin(w http.ResponseWriter, r *http.Request) {
	s := h.requireAdmin(w, r)
	if s == nil {
		return
	}
	conns, err := h.orgConns(r, s.Org, Filter{})
	if err != nil {
		h.adminUnavailable(w, r, s, err)
		return
	}
	byServer := map[string][]Connection{}
	for _, c := range conns {
		byServer[c.Key.Server] = append(byServer[c.Key.Server], c)
	}
	ids := slices.Clone(h.order)
	for _, id := range sortedKeys(byServer) {
		if _, ok := h.servers[id]; !ok {
			ids = append(ids, id)
		}
	}
	d := pageData{Title: "Administration", Wide: true, Notice: noticeText(r.URL.Query().Get("done")), Admin: &adminView{Org: orgName(s.Org)}}
	for _, id := range ids {
		d.Admin.Servers = append(d.Admin.Servers, h.adminServer(id, byServer[id]))
	}
	events, truncated, err := h.orgEvents(r, s.Org, conns, 30)
	if err != nil {
		h.log.Error("connect: organization history", "org", s.Org, "err", err)
		d.Admin.EventsUnavailable = true
	}
	events = slices.DeleteFunc(events, func(e Event) bool { return e.Type == "refreshed" || e.Type == "status_changed" })
	if len(events) > maxAdminEvents {
		events = events[:maxAdminEvents]
	}
	for _, e := range events {
		d.Admin.Events = append(d.Admin.Events, h.eventView(e))
	}
	d.Admin.EventsTruncated = truncated
	h.render(w, r, http.StatusOK, "admin.html", s, d)
}

// serveAdminServer (GET /connect/admin/{server}) lists everyone's status for
// one server (optionally one status) and the organization's connection.
func (h *Handler) serveAdminServer(w http.ResponseWriter, r *http.Request) {
	s := h.requireAdmin(w, r)
	if s == nil {
		return
	}
	id := r.PathValue("server")
	filter := Status(r.URL.Query().Get("status"))
	if filter != "" && !slices.Contains(allStatuses, filter) {
		h.renderError(w, r, http.StatusBadRequest, "Unknown status", "Choose a status from the list.", "/connect/admin/"+id)
		return
	}
	conns, err := h.orgConns(r, s.Org, Filter{Server: id})
	if err != nil {
		h.adminUnavailable(w, r, s, err)
		return
	}
	conns = slices.DeleteFunc(conns, func(c Connection) bool { return c.Key.Server != id })
	if _, ok := h.servers[id]; !ok && len(conns) == 0 {
		h.serveNotFound(w, r)
		return
	}
	v := h.adminServer(id, conns)
	v.Filter = filter
	srv, _ := h.serverInfo(id)
	people := slices.DeleteFunc(conns, func(c Connection) bool { return c.Key.UserKey == "" || (filter != "" && c.Status != filter) })
	slices.SortFunc(people, func(a, b Connection) int {
		return cmp.Or(cmp.Compare(personName(a.Key.UserKey), personName(b.Key.UserKey)), cmp.Compare(a.Key.UserKey, b.Key.UserKey))
	})
	if len(people) > maxAdminRows {
		v.Hidden = len(people) - maxAdminRows
		people = people[:maxAdminRows]
	}
	for _, c := range people {
		pv := h.view(srv, c, forAdmin)
		pv.Person, pv.PersonKey = personName(c.Key.UserKey), c.Key.UserKey
		v.People = append(v.People, pv)
	}
	d := pageData{Title: srv.Name + " · Administration", Wide: true, Notice: noticeText(r.URL.Query().Get("done")), AdminServer: &v}
	h.render(w, r, http.StatusOK, "admin_server.html", s, d)
}

// adminServer summarizes one server's records for the administrators.
func (h *Handler) adminServer(id string, conns []Connection) adminServerView {
	srv, configured := h.serverInfo(id)
	v := adminServerView{ID: id, Name: srv.Name, Configured: configured, Shared: srv.Mode == ModeServiceAccount, Mode: modeText(srv.Mode, configured, forAdmin)}
	counts := map[Status]int{}
	var org Connection
	hasOrg := false
	for _, c := range conns {
		if c.Key.UserKey == "" {
			org, hasOrg = c, true
			continue
		}
		counts[c.Status]++
		v.Total++
	}
	for _, st := range allStatuses {
		if counts[st] == 0 {
			continue
		}
		v.Counts = append(v.Counts, countView{Status: st, Class: strings.ToLower(string(st)), N: counts[st]})
	}
	if v.Shared || hasOrg {
		ov := h.view(srv, org, forOrg)
		ov.Mode = "" // the page says it once, above
		ov.ConnectAction, ov.RevokeAction = "/connect/admin/"+id+"/org/connect", "/connect/admin/"+id+"/org/revoke"
		// Revoke as for a person's connection (view decided it by status);
		// Authorize only while the server is in service_account mode.
		ov.CanConnect = v.Shared
		if ov.CanConnect && (!hasOrg || org.ConnectedAt.IsZero()) {
			ov.ConnectLabel = "Authorize"
		}
		v.Org = &ov
	}
	return v
}

// serveAdminRevoke (POST /connect/admin/{server}/revoke, form user=<user
// key>) revokes a person's connection in the administrator's organization.
func (h *Handler) serveAdminRevoke(w http.ResponseWriter, r *http.Request) {
	s := h.postAdmin(w, r)
	if s == nil {
		return
	}
	id, user := r.PathValue("server"), r.PostFormValue("user")
	if user == "" || len(user) > 1024 || strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		h.renderError(w, r, http.StatusBadRequest, "Nothing to revoke", "The form did not name a person. Go back and try again.", "/connect/admin/")
		return
	}
	// The key is always in the administrator's own organization.
	key := Key{Org: s.Org, UserKey: user, Server: id}
	err := h.opts.Manager.Revoke(r.Context(), key, Actor{Kind: "admin", ID: s.UserKey}, "admin_revoked")
	switch {
	case errors.Is(err, ErrNotFound):
		h.log.Warn("connect: admin revoke of an unknown connection", "org", s.Org, "admin_user_key", s.UserKey, "user_key", user, "server", id)
		h.renderError(w, r, http.StatusNotFound, "No such connection", "Nobody in your organization has a connection to this server under that name.", "/connect/admin/")
		return
	case err != nil:
		h.log.Error("connect: admin revoke", "org", s.Org, "admin_user_key", s.UserKey, "user_key", user, "server", id, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Revoking failed", "mcpauthz could not revoke the connection. Try again.", "/connect/admin/"+id)
		return
	}
	h.log.Info("connect: revoked by admin", "org", s.Org, "admin_user_key", s.UserKey, "user_key", user, "server", id)
	http.Redirect(w, r, "/connect/admin/"+id+"?done=revoked", http.StatusSeeOther)
}

// serveAdminOrgConnect (POST /connect/admin/{server}/org/connect) starts the
// organization's service-account connection: the administrator signs in at
// the provider with the account everyone's calls will use.
func (h *Handler) serveAdminOrgConnect(w http.ResponseWriter, r *http.Request) {
	s := h.postAdmin(w, r)
	if s == nil {
		return
	}
	srv, ok := h.sharedServer(r.PathValue("server"))
	if !ok {
		h.serveNotFound(w, r)
		return
	}
	h.log.Info("connect: organization connection started by admin", "org", s.Org, "admin_user_key", s.UserKey, "server", srv.ID, "from_link", false)
	h.start(w, r, s, Key{Org: s.Org, Server: srv.ID}, "", "/connect/admin/")
}

// serveAdminOrgRevoke (POST /connect/admin/{server}/org/revoke) revokes the
// organization's service-account connection.
func (h *Handler) serveAdminOrgRevoke(w http.ResponseWriter, r *http.Request) {
	s := h.postAdmin(w, r)
	if s == nil {
		return
	}
	id := r.PathValue("server")
	if _, ok := h.servers[id]; !ok {
		conns, err := h.orgConns(r, s.Org, Filter{Server: id, ServiceAccounts: true})
		if err != nil {
			h.adminUnavailable(w, r, s, err)
			return
		}
		if !slices.ContainsFunc(conns, func(c Connection) bool { return c.Key == Key{Org: s.Org, Server: id} }) {
			h.serveNotFound(w, r)
			return
		}
	}
	done := "org_revoked"
	err := h.opts.Manager.Revoke(r.Context(), Key{Org: s.Org, Server: id}, Actor{Kind: "admin", ID: s.UserKey}, "admin_revoked")
	switch {
	case errors.Is(err, ErrNotFound):
		done = "nothing"
	case err != nil:
		h.log.Error("connect: admin revoke of the organization's connection", "org", s.Org, "admin_user_key", s.UserKey, "server", id, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Revoking failed", "mcpauthz could not revoke the connection. Try again.", "/connect/admin/"+id)
		return
	default:
		h.log.Info("connect: organization connection revoked by admin", "org", s.Org, "admin_user_key", s.UserKey, "server", id)
	}
	http.Redirect(w, r, "/connect/admin/"+id+"?done="+done, http.StatusSeeOther)
}

func (h *Handler) adminUnavailable(w http.ResponseWriter, r *http.Request, s *session, err error) {
	h.log.Error("connect: list the organization's connections", "org", s.Org, "err", err)
	h.renderError(w, r, http.StatusServiceUnavailable, "Connections are unavailable", "mcpauthz could not read your organization's connections. Try again in a minute.", "/connect/admin/")
}

// noticeText is the confirmation shown after an action (fixed texts only:
// nothing from the URL is echoed).
func noticeText(done string) string {
	switch done {
	case "revoked":
		return "The connection was revoked. That person must authorize again to use this server."
	case "org_revoked":
		return "The organization's connection was revoked. Calls to this server are refused until an administrator authorizes it again."
	case "nothing":
		return "There was nothing to revoke."
	}
	return ""
}

// personName is the readable part of a user key (namespace|org|user_id):
// the user id, unescaped; the whole key when it has another shape.
func personName(userKey string) string {
	parts := strings.Split(userKey, "|")
	if len(parts) != 3 || parts[2] == "" {
		return userKey
	}
	return strings.NewReplacer("%7C", "|", "%25", "%").Replace(parts[2])
}

func orgName(org string) string {
	if org == "" {
		return "your organization"
	}
	return org
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
