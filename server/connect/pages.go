package connect

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html static/style.css
var assets embed.FS

// pages holds the parsed templates: each page is parsed with the shared
// layout, so a page file only defines "content" (and may use the shared
// "badge", "time" and "actions" blocks).
type pages struct {
	t   map[string]*template.Template
	css []byte
}

var pageFiles = []string{"list.html", "server.html", "message.html", "logout.html", "continue.html", "admin.html", "admin_server.html"}

func loadPages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, f := range pageFiles {
		t, err := template.New(f).ParseFS(assets, "templates/layout.html", "templates/parts.html", "templates/"+f)
		if err != nil {
			return nil, fmt.Errorf("connect: template %s: %w", f, err)
		}
		p.t[f] = t
	}
	css, err := assets.ReadFile("static/style.css")
	if err != nil {
		return nil, fmt.Errorf("connect: stylesheet: %w", err)
	}
	p.css = css
	return p, nil
}

// pageData is what every page template receives.
type pageData struct {
	Title   string // <title>
	Heading string
	Text    string
	Kind    string // "", "ok", "error": the message box style
	Link    string // a same-origin path or the provider URL on continue.html
	// Return is where sign-out leads back to after signing in again.
	Return string
	// LinkText labels Link.
	LinkText string
	// Badge shows a status on message pages.
	Badge *serverView
	// Servers are the user's own connections; Shared the servers the
	// organization connects once for everyone (users' page).
	Servers, Shared []serverView
	Server          *serverView
	// Notice confirms an action (a fixed text).
	Notice string
	// Wide pages (tables) use more of a large screen.
	Wide        bool
	Admin       *adminView
	AdminServer *adminServerView
	// Filled by render.
	User     *userView
	CSRF     string
	Insecure bool
}

type userView struct {
	Display, Org string
	Admin        bool
}

// adminView is the administrators' overview.
type adminView struct {
	Org               string
	Servers           []adminServerView
	Events            []eventView
	EventsTruncated   bool
	EventsUnavailable bool
}

// adminServerView is one server on the administrators' pages.
type adminServerView struct {
	ID, Name, Mode string
	Configured     bool
	Shared         bool // service_account: the organization connects once
	Counts         []countView
	Total          int // people with a record
	Org            *serverView
	People         []serverView
	Hidden         int    // people beyond maxAdminRows
	Filter         Status // the status the list is limited to
	Statuses       []Status
	CSRF           string
}

type countView struct {
	Status Status
	Class  string
	N      int
}

// eventView is one audit event on the administrators' overview.
type eventView struct {
	Time                 timeView
	What, Server, Person string
	By, Reason           string
	From, To             Status
	FromClass, ToClass   string
}

// serverView is one server's row on the list and its own page.
type serverView struct {
	ID, Name       string
	Status         Status
	Class          string // badge modifier, lower-case status
	Reason         string // the reason in words
	LastError      string
	Scopes         []string
	Connected      timeView
	LastUsed       timeView
	LastRefreshed  timeView
	AccessExpires  timeView
	ConnectLabel   string // "Connect", "Reauthorize" or "Authorize"
	Primary        bool   // Connect is the action the status calls for
	CanConnect     bool
	CanRevoke      bool
	ConnectAction  string // form actions
	RevokeAction   string
	CSRF           string
	ProviderOrigin string
	// Mode says in words whose account the server uses.
	Mode string
	// Retired: the user's own connection to a server that no longer takes
	// personal connections (kept so the reason stays visible).
	Retired bool
	// Person and PersonKey name whose connection it is (administrators).
	Person, PersonKey string
}

type timeView struct {
	Set                   bool
	ISO, Text, Short, Ago string
}

// render executes a page; it never writes a partial page.
func (h *Handler) render(w http.ResponseWriter, _ *http.Request, status int, page string, s *session, d pageData) {
	if s != nil {
		name := s.Name
		if name == "" {
			name = s.Subject
		}
		d.User = &userView{Display: name, Org: s.Org, Admin: h.isAdmin(s)}
		d.CSRF = h.csrfToken(s)
		for i := range d.Servers {
			d.Servers[i].CSRF = d.CSRF
		}
		if d.Server != nil {
			d.Server.CSRF = d.CSRF
		}
		setCSRF := func(v *adminServerView) {
			v.CSRF = d.CSRF
			v.Statuses = allStatuses
			if v.Org != nil {
				v.Org.CSRF = d.CSRF
			}
			for i := range v.People {
				v.People[i].CSRF = d.CSRF
			}
		}
		if d.Admin != nil {
			for i := range d.Admin.Servers {
				setCSRF(&d.Admin.Servers[i])
			}
		}
		if d.AdminServer != nil {
			setCSRF(d.AdminServer)
		}
	}
	d.Insecure = h.cfg.InsecureCookies
	var buf bytes.Buffer
	if err := h.pages.t[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		h.log.Error("connect: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows a message page with an error style.
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, status int, heading, text, link string) {
	d := pageData{Title: heading, Heading: heading, Text: text, Kind: "error", Link: link}
	switch {
	case link == "":
		d.Link, d.LinkText = "/connect/", "Go to your connections"
	case link == "/connect/login":
		d.LinkText = "Sign in again"
	case strings.HasPrefix(link, "/connect/logout"):
		d.LinkText = "Sign out to switch account"
	default:
		d.LinkText = "Continue"
	}
	h.render(w, r, status, "message.html", h.session(r), d)
}

func (h *Handler) serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(h.pages.css)
}

func (h *Handler) serveNotFound(w http.ResponseWriter, r *http.Request) {
	h.renderError(w, r, http.StatusNotFound, "Page not found", "There is no page at this address.", "")
}

// allStatuses in the order pages list them.
var allStatuses = []Status{StatusAuthorized, StatusPending, StatusNeedsAuthorization, StatusExpired, StatusError, StatusRevoked}

// audience is who a connection is described to.
type audience int

const (
	forUser  audience = iota // the person whose connection it is
	forAdmin                 // an administrator looking at someone's
	forOrg                   // the organization's own connection
)

// modeText says a server's mode in words, to who.
func modeText(mode string, configured bool, who audience) string {
	switch {
	case !configured && who == forUser:
		return "No longer a personal connection"
	case !configured:
		return "No longer configured"
	case mode == ModeServiceAccount && who == forAdmin:
		return "The organization's account, authorized by an administrator"
	case mode == ModeServiceAccount:
		return "Your organization's"
	case who == forAdmin:
		return "Each person's own account"
	default:
		return "Yours"
	}
}

// view builds a server's view from a connection (zero: none yet).
func (h *Handler) view(s ServerInfo, c Connection, who audience) serverView {
	st := c.Status
	if st == "" {
		st = StatusNeedsAuthorization
	}
	_, configured := h.servers[s.ID]
	v := serverView{
		ID: s.ID, Name: s.Name, Status: st, Class: strings.ToLower(string(st)),
		Reason:         reasonText(st, c.Reason, who),
		LastError:      truncateRunes(c.LastError, 300),
		Scopes:         c.Scopes,
		Connected:      h.timeView(c.ConnectedAt),
		LastUsed:       h.timeView(c.LastUsedAt),
		LastRefreshed:  h.timeView(c.LastRefreshedAt),
		AccessExpires:  h.timeView(c.AccessExpiresAt),
		ProviderOrigin: s.ProviderOrigin,
		Mode:           modeText(s.Mode, configured, who),
		ConnectAction:  "/connect/" + s.ID,
		RevokeAction:   "/connect/" + s.ID + "/revoke",
	}
	v.CanConnect, v.Primary = true, true
	switch st {
	case StatusNeedsAuthorization:
		v.ConnectLabel = "Connect"
		v.Scopes = nil // nothing is granted
	case StatusPending:
		v.ConnectLabel = "Connect"
		v.CanRevoke = !c.ConnectedAt.IsZero()
	case StatusAuthorized:
		v.ConnectLabel, v.CanRevoke, v.Primary = "Reauthorize", true, false
	case StatusExpired, StatusError:
		v.ConnectLabel, v.CanRevoke = "Reauthorize", true
	case StatusRevoked:
		v.ConnectLabel = "Reauthorize"
		v.Scopes = nil // the tokens are gone
	default:
		v.ConnectLabel, v.CanRevoke = "Reauthorize", true
		v.Class = "error"
	}
	if who == forAdmin {
		// Administrators cannot connect someone else's account.
		v.CanConnect, v.Primary = false, false
		v.RevokeAction = "/connect/admin/" + s.ID + "/revoke"
	}
	return v
}

func (h *Handler) timeView(t time.Time) timeView {
	if t.IsZero() {
		return timeView{}
	}
	t = t.UTC()
	return timeView{Set: true, ISO: t.Format(time.RFC3339), Text: t.Format("2 Jan 2006, 15:04 UTC"), Short: t.Format("2 Jan 15:04 UTC"), Ago: ago(h.now().Sub(t))}
}

// ago says a duration in words ("in 5 minutes" for the future).
func ago(d time.Duration) string {
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		if future {
			return "in under a minute"
		}
		return "just now"
	case d < time.Hour:
		s = plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		s = plural(int(d/time.Hour), "hour")
	default:
		s = plural(int(d/(24*time.Hour)), "day")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// reasons says the connections package's reason codes in words.
var reasons = map[string]string{
	"connected":              "Connected. mcpauthz renews the authorization before it runs out.",
	"refreshed":              "Connected. mcpauthz renews the authorization before it runs out.",
	"connect_started":        "A connection was started but not finished.",
	"connect_abandoned":      "A connection was started but not finished in time.",
	"flow_expired":           "A connection was started but not finished in time.",
	"connect_failed":         "The last attempt to connect failed.",
	"wrong_user":             "The last attempt to connect was finished by another account and refused.",
	"exchange_failed":        "The last attempt to connect failed: the service did not accept it.",
	"provider_access_denied": "Access was declined at the service.",
	"user_revoked":           "You revoked this connection.",
	"admin_revoked":          "An administrator revoked this connection.",
	"revoked":                "The connection was revoked.",
	"mode_switch":            "This server now uses a shared account set up by an administrator, so your connection was removed.",
	"server_removed":         "This server is no longer set up for personal connections, so your connection was removed.",
	"refresh_invalid_grant":  "The service no longer accepts the authorization: it was revoked there or it ran out.",
	"refresh_revoked":        "The service no longer accepts the authorization: it was revoked there.",
	"refresh_expired":        "The authorization ran out at the service.",
	"access_expired":         "The authorization ran out and the service gave no way to renew it.",
	"upstream_rejected":      "The MCP server refused the access token and renewing it did not help.",
	"refresh_failed":         "Renewing the authorization failed; mcpauthz keeps trying.",
	"refresh_gave_up":        "Renewing the authorization failed several times in a row.",
}

// reasonsFor override reasons for administrators and for the
// organization's connection (the user's wording says "you").
var reasonsFor = map[audience]map[string]string{
	forAdmin: {
		"user_revoked":    "The person revoked this connection.",
		"admin_revoked":   "An administrator revoked this connection.",
		"mode_switch":     "Removed when this server switched to an organization account.",
		"server_removed":  "Removed when this server was taken out of the configuration.",
		"connect_started": "The person started connecting but has not finished.",
	},
	forOrg: {
		"connected":       "Connected for the whole organization. mcpauthz renews the authorization before it runs out.",
		"refreshed":       "Connected for the whole organization. mcpauthz renews the authorization before it runs out.",
		"admin_revoked":   "An administrator revoked the organization's connection. Calls to this server are refused until an administrator authorizes it again.",
		"mode_switch":     "This server now uses each person's own account, so the organization's connection was removed.",
		"server_removed":  "This server was taken out of the configuration, so the organization's connection was removed.",
		"wrong_user":      "The last attempt to authorize was finished by another account and refused.",
		"connect_started": "An administrator started authorizing but has not finished.",
	},
}

var baseReasons = map[audience]map[Status]string{
	forUser: {
		StatusNeedsAuthorization: "You have not connected this server yet.",
		StatusPending:            "A connection was started but not finished.",
		StatusAuthorized:         "Connected. mcpauthz renews the authorization before it runs out.",
		StatusExpired:            "The authorization ran out. Reauthorize to keep using this server.",
		StatusRevoked:            "The authorization was revoked. Reauthorize to use this server again.",
		StatusError:              "mcpauthz could not renew the authorization. Reauthorize, or try again later.",
	},
	forAdmin: {
		StatusNeedsAuthorization: "Not connected.",
		StatusPending:            "Connecting started but not finished.",
		StatusAuthorized:         "Connected.",
		StatusExpired:            "The authorization ran out.",
		StatusRevoked:            "The authorization was revoked.",
		StatusError:              "mcpauthz could not renew the authorization.",
	},
	forOrg: {
		StatusNeedsAuthorization: "No administrator has authorized this server yet. Calls to it are refused until one does.",
		StatusPending:            "An administrator started authorizing but has not finished.",
		StatusAuthorized:         "Connected for the whole organization. mcpauthz renews the authorization before it runs out.",
		StatusExpired:            "The organization's authorization ran out. An administrator must authorize it again.",
		StatusRevoked:            "The organization's authorization was revoked. An administrator must authorize it again.",
		StatusError:              "mcpauthz could not renew the organization's authorization. An administrator should authorize it again.",
	},
}

// reasonText explains a status and its reason to who.
func reasonText(st Status, reason string, who audience) string {
	if t, ok := reasonsFor[who][reason]; ok {
		return t
	}
	if t, ok := reasons[reason]; ok {
		return t
	}
	if strings.HasPrefix(reason, "provider_") {
		return "The last attempt to connect failed: the service answered " + errorCode(strings.TrimPrefix(reason, "provider_")) + "."
	}
	base := baseReasons[who][st]
	if base == "" {
		base = "Unknown status."
	}
	if reason == "" {
		return base
	}
	// An unknown code: show it in words, after the status's explanation.
	return base + " (" + reasonWords(reason) + ")"
}

// reasonWords is a reason code in words ("refresh_invalid_grant" ->
// "refresh invalid grant").
func reasonWords(reason string) string {
	return strings.ReplaceAll(errorCode(reason), "_", " ")
}

// errorCode reduces a provider's error code to a safe short token.
func errorCode(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 64 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' || r == '-' || r == '.' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// describeOAuthError says an RFC 6749 error code in words.
func describeOAuthError(code string) string {
	switch code {
	case "access_denied":
		return "Access was declined. Nothing was connected."
	case "temporarily_unavailable", "server_error":
		return "The service had a temporary problem. Try again in a minute."
	case "invalid_scope":
		return "The service does not offer the permissions mcpauthz asked for. Tell your administrator."
	case "login_required", "consent_required", "interaction_required":
		return "The service needs you to sign in or approve access. Try again."
	default:
		return "The service refused the request (" + errorCode(code) + "). Try again, or tell your administrator."
	}
}
