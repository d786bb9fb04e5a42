package connect

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// historyFile is the JSON a person (or an administrator, for the whole
// organization) downloads. Events never carry tokens: connections.Event
// has none.
type historyFile struct {
	Organization string        `json:"organization"`
	User         string        `json:"user,omitempty"` // the person's user key (their own download)
	ExportedAt   time.Time     `json:"exported_at"`
	Note         string        `json:"note"`
	Truncated    bool          `json:"truncated,omitempty"`
	Events       []historyItem `json:"events"`
}

type historyItem struct {
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	Server string    `json:"server"`
	// User is whose connection it is ("" = the organization's); only in
	// the organization's download.
	User       *string    `json:"user,omitempty"`
	Connection string     `json:"connection"` // "personal" | "organization"
	Actor      historyWho `json:"actor"`
	From       Status     `json:"from,omitempty"`
	To         Status     `json:"to,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Summary    string     `json:"summary"`
}

type historyWho struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
}

// maxExportUsers bounds the organization's download (people's histories
// read, most recently changed first).
const maxExportUsers = 1000

// serveHistory (GET /connect/history) downloads the signed-in person's
// authorization history in their organization as JSON.
func (h *Handler) serveHistory(w http.ResponseWriter, r *http.Request) {
	s := h.requireLogin(w, r)
	if s == nil {
		return
	}
	events, err := h.opts.Manager.History(r.Context(), s.Org, s.UserKey, 0)
	if err != nil {
		h.log.Error("connect: history", "org", s.Org, "user_key", s.UserKey, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "Your history is unavailable", "mcpauthz could not read your authorization history. Try again in a minute.", "/connect/")
		return
	}
	// Only this person's events, whatever History returned.
	events = slices.DeleteFunc(events, func(e Event) bool { return e.Key.Org != s.Org || e.Key.UserKey != s.UserKey })
	f := historyFile{
		Organization: s.Org, User: s.UserKey, ExportedAt: h.now().UTC(),
		Note:   "Your authorization history at mcpauthz in this organization, newest first. It never contains tokens.",
		Events: h.historyItems(events, false),
	}
	h.log.Info("connect: history downloaded", "org", s.Org, "user_key", s.UserKey, "events", len(f.Events))
	h.sendJSON(w, "mcpauthz-authorization-history-"+f.ExportedAt.Format("2006-01-02")+".json", f)
}

// serveAdminHistory (GET /connect/admin/history) downloads the
// organization's authorization events (its own connections' and its
// people's) as JSON.
func (h *Handler) serveAdminHistory(w http.ResponseWriter, r *http.Request) {
	s := h.requireAdmin(w, r)
	if s == nil {
		return
	}
	conns, err := h.orgConns(r, s.Org, Filter{})
	if err != nil {
		h.adminUnavailable(w, r, s, err)
		return
	}
	events, truncated, err := h.orgEventsN(r, s.Org, conns, 0, maxExportUsers)
	if err != nil {
		h.log.Error("connect: organization history", "org", s.Org, "err", err)
		h.renderError(w, r, http.StatusServiceUnavailable, "The history is unavailable", "mcpauthz could not read the authorization history. Try again in a minute.", "/connect/admin/")
		return
	}
	f := historyFile{
		Organization: s.Org, ExportedAt: h.now().UTC(), Truncated: truncated,
		Note:   "Authorization events of this organization's connections at mcpauthz, newest first. It never contains tokens.",
		Events: h.historyItems(events, true),
	}
	h.log.Info("connect: organization history downloaded", "org", s.Org, "admin_user_key", s.UserKey, "events", len(f.Events))
	h.sendJSON(w, "mcpauthz-organization-history-"+f.ExportedAt.Format("2006-01-02")+".json", f)
}

func (h *Handler) historyItems(events []Event, withUser bool) []historyItem {
	out := make([]historyItem, 0, len(events))
	for _, e := range events {
		it := historyItem{
			Time: e.Time.UTC(), Type: e.Type, Server: e.Key.Server, Connection: "personal",
			Actor: historyWho{Kind: e.Actor.Kind, ID: e.Actor.ID},
			From:  e.From, To: e.To, Reason: e.Reason, Summary: eventSummary(e),
		}
		if e.Key.UserKey == "" {
			it.Connection = "organization"
		}
		if withUser {
			u := e.Key.UserKey
			it.User = &u
		}
		out = append(out, it)
	}
	return out
}

// sendJSON answers a download: an attachment, never cached (the security
// headers already say no-store).
func (h *Handler) sendJSON(w http.ResponseWriter, filename string, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		h.log.Error("connect: encode history", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	_, _ = w.Write(buf.Bytes())
}

// orgEvents returns recent events of the organization: its own
// connections' and those of the maxEventUsers people whose connections
// changed last (connections.Manager keeps history per person; see the
// report for the org-wide method this would use). truncated says people
// were left out.
func (h *Handler) orgEvents(r *http.Request, org string, conns []Connection, perUser int) ([]Event, bool, error) {
	return h.orgEventsN(r, org, conns, perUser, maxEventUsers)
}

func (h *Handler) orgEventsN(r *http.Request, org string, conns []Connection, perUser, maxUsers int) ([]Event, bool, error) {
	latest := map[string]time.Time{}
	for _, c := range conns {
		if c.Key.Org != org || c.Key.UserKey == "" {
			continue
		}
		if t, ok := latest[c.Key.UserKey]; !ok || c.UpdatedAt.After(t) {
			latest[c.Key.UserKey] = c.UpdatedAt
		}
	}
	users := sortedKeys(latest)
	slices.SortStableFunc(users, func(a, b string) int { return latest[b].Compare(latest[a]) })
	truncated := len(users) > maxUsers
	if truncated {
		users = users[:maxUsers]
	}
	users = append([]string{""}, users...) // the organization's own connections
	var all []Event
	for _, u := range users {
		evs, err := h.opts.Manager.History(r.Context(), org, u, perUser)
		if err != nil {
			return nil, truncated, err
		}
		for _, e := range evs {
			if e.Key.Org == org && e.Key.UserKey == u {
				all = append(all, e)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b Event) int { return cmp.Compare(b.Time.UnixNano(), a.Time.UnixNano()) })
	return all, truncated, nil
}

// eventTypes says the event types in words.
var eventTypes = map[string]string{
	"connect_started": "Started connecting",
	"connected":       "Connected",
	"connect_failed":  "Connecting failed",
	"refreshed":       "Renewed",
	"refresh_failed":  "Renewal failed",
	"revoked":         "Revoked",
	"status_changed":  "Status changed",
}

func eventWhat(typ string) string {
	if t, ok := eventTypes[typ]; ok {
		return t
	}
	return reasonWords(typ)
}

// actorText says who acted, for an event on key.
func actorText(a Actor, key Key) string {
	switch a.Kind {
	case "user":
		if a.ID == key.UserKey && a.ID != "" {
			return "the person"
		}
		if a.ID != "" {
			return personName(a.ID)
		}
		return "a person"
	case "admin":
		if a.ID == "" {
			return "an administrator"
		}
		return "administrator " + personName(a.ID)
	case "provider":
		return "the service"
	case "system":
		return "mcpauthz"
	}
	return reasonWords(a.Kind)
}

// eventSummary is an event in one sentence.
func eventSummary(e Event) string {
	whose := "personal connection"
	if e.Key.UserKey == "" {
		whose = "organization's connection"
	}
	s := eventWhat(e.Type) + " (" + whose + " to " + e.Key.Server + ") by " + actorText(e.Actor, e.Key)
	if e.Reason != "" {
		s += ": " + reasonWords(e.Reason)
	}
	return s + "."
}

func (h *Handler) eventView(e Event) eventView {
	srv, _ := h.serverInfo(e.Key.Server)
	v := eventView{
		Time: h.timeView(e.Time), What: eventWhat(e.Type), Server: srv.Name,
		Person: personName(e.Key.UserKey), By: actorText(e.Actor, e.Key),
		From: e.From, To: e.To,
	}
	if e.Key.UserKey == "" {
		v.Person = "Organization"
	}
	if v.By == "the person" {
		v.By = v.Person
	}
	// The reason, unless it only repeats the event.
	switch e.Reason {
	case "", e.Type, "connected", "connect_started", "refreshed", "user_revoked", "admin_revoked":
	default:
		v.Reason = reasonWords(e.Reason)
	}
	if v.From != "" {
		v.FromClass = statusClass(v.From)
	}
	if v.To != "" {
		v.ToClass = statusClass(v.To)
	}
	return v
}

func statusClass(st Status) string {
	if slices.Contains(allStatuses, st) {
		return string(bytes.ToLower([]byte(st)))
	}
	return "error"
}
