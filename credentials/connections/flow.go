package connections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// flowGrace keeps a flow (and its used marker) in the store this long past
// its TTL, so an expired or replayed state is told apart from an unknown one.
const flowGrace = time.Hour

// flow is a pending connect flow (sealed; it holds the PKCE verifier).
type flow struct {
	Key      Key    `json:"key"`
	Verifier string `json:"verifier"`
	ReturnTo string `json:"return_to,omitempty"`
	Created  int64  `json:"created"`
	Used     bool   `json:"used,omitempty"`
}

// link is a connect link (sealed).
type link struct {
	Key     Key    `json:"key,omitzero"`
	ID      string `json:"id,omitempty"` // in linkbykey records
	Created int64  `json:"created"`
}

type linkEntry struct {
	url   string
	until time.Time
}

func (m *Manager) sealJSON(storeKey string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return m.cipher.Encrypt(b, []byte(storeKey))
}

// getSealed reads and opens a value sealed with aad = its key.
func (m *Manager) getSealed(ctx context.Context, storeKey string, v any) (store.Version, error) {
	ct, ver, err := m.store.Get(ctx, storeKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, ErrNotFound
	case err != nil:
		return 0, fmt.Errorf("connections: %w: %w", ErrUnavailable, err)
	}
	pt, err := m.cipher.Decrypt(ct, []byte(storeKey))
	if err != nil {
		return 0, fmt.Errorf("connections: %w: %w", ErrUnavailable, err)
	}
	defer clear(pt)
	if err := json.Unmarshal(pt, v); err != nil {
		return 0, fmt.Errorf("connections: %w: malformed sealed value", ErrUnavailable)
	}
	return ver, nil
}

func (m *Manager) linkURL(id string) string {
	return m.cfg.PublicURL + "/connect/start?link=" + url.QueryEscape(id)
}

// Link returns mcpauthz's own connect URL for key: a single-use link id,
// valid for FlowTTL, bound to key and reused while it has more than half its
// life left, so a flood of denied calls creates one link.
func (m *Manager) Link(ctx context.Context, key Key) (string, error) {
	if _, err := m.serverFor(key); err != nil {
		return "", err
	}
	now := m.now()
	if v, ok := m.links.Load(key); ok && now.Before(v.(linkEntry).until) {
		return v.(linkEntry).url, nil
	}
	byKey := prefixLinkByKey + key.path()
	reuseFor := m.cfg.FlowTTL / 2
	for range 4 {
		var lk link
		ver, err := m.getSealed(ctx, byKey, &lk)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
		if err == nil {
			var target link
			if now.Before(fromMS(lk.Created).Add(reuseFor)) {
				if _, err := m.getSealed(ctx, prefixLink+hashID(lk.ID), &target); err == nil && target.Key == key {
					u := m.linkURL(lk.ID)
					until := now.Add(cacheTTL)
					if end := fromMS(lk.Created).Add(reuseFor); end.Before(until) {
						until = end
					}
					m.links.Store(key, linkEntry{url: u, until: until})
					return u, nil
				}
			}
		}
		id := randomID()
		lkey := prefixLink + hashID(id)
		ct, err := m.sealJSON(lkey, link{Key: key, Created: ms(now)})
		if err != nil {
			return "", err
		}
		if _, _, err := m.store.PutIfAbsent(ctx, lkey, ct, m.cfg.FlowTTL); err != nil {
			return "", fmt.Errorf("connections: link: %w: %w", ErrUnavailable, err)
		}
		ct, err = m.sealJSON(byKey, link{ID: id, Created: ms(now)})
		if err != nil {
			return "", err
		}
		if ver != 0 {
			_, err = m.store.CompareAndSwap(ctx, byKey, ver, ct, m.cfg.FlowTTL)
		} else {
			var created bool
			if _, created, err = m.store.PutIfAbsent(ctx, byKey, ct, m.cfg.FlowTTL); err == nil && !created {
				err = store.ErrConflict
			}
		}
		switch {
		case err == nil:
			u := m.linkURL(id)
			m.links.Store(key, linkEntry{url: u, until: now.Add(cacheTTL)})
			return u, nil
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			_ = m.store.Delete(ctx, lkey, 0) // lost the race: use the winner's link
		default:
			return "", fmt.Errorf("connections: link: %w: %w", ErrUnavailable, err)
		}
	}
	return "", fmt.Errorf("connections: link: %w: too many concurrent updates", ErrUnavailable)
}

// ResolveLink returns the key a link id was minted for (not consumed).
func (m *Manager) ResolveLink(ctx context.Context, linkID string) (Key, error) {
	if linkID == "" || len(linkID) > 128 {
		return Key{}, ErrFlowExpired
	}
	var lk link
	if _, err := m.getSealed(ctx, prefixLink+hashID(linkID), &lk); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Key{}, ErrFlowExpired
		}
		return Key{}, err
	}
	return lk.Key, nil
}

// checkReturnTo accepts "" or a same-origin absolute path.
func checkReturnTo(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") ||
		u.Scheme != "" || u.Host != "" || len(s) > 2048 || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return fmt.Errorf("connections: return path must be a same-origin path: %w", ErrForbidden)
	}
	return nil
}

// StartConnect consumes the link when linkID != "" (it must resolve to
// key), creates a pending flow (state 128-bit random, PKCE S256 verifier,
// TTL FlowTTL, status PENDING) and returns the provider's authorization
// URL. returnTo is a same-origin path kept with the flow.
func (m *Manager) StartConnect(ctx context.Context, key Key, linkID, returnTo string) (string, error) {
	srv, err := m.serverFor(key)
	if err != nil {
		return "", err
	}
	if err := checkReturnTo(returnTo); err != nil {
		return "", err
	}
	if linkID != "" {
		if err := m.consumeLink(ctx, key, linkID); err != nil {
			return "", err
		}
	}
	ep, err := srv.endpoints(ctx)
	if err != nil {
		return "", fmt.Errorf("connections: provider of %q: %w", key.Server, err)
	}
	now := m.now()
	state, verifier := randomID(), oauth2.GenerateVerifier()
	fk := prefixFlow + hashID(state)
	ct, err := m.sealJSON(fk, flow{Key: key, Verifier: verifier, ReturnTo: returnTo, Created: ms(now)})
	if err != nil {
		return "", err
	}
	if _, _, err := m.store.PutIfAbsent(ctx, fk, ct, m.cfg.FlowTTL+flowGrace); err != nil {
		return "", fmt.Errorf("connections: start: %w: %w", ErrUnavailable, err)
	}
	by := Actor{Kind: actorKind(key), ID: key.UserKey}
	if _, err := m.update(ctx, key, func(r *record, _ bool, now time.Time) ([]Event, error) {
		evs := r.settle(key, now)
		from, fromReason := r.meta.Status, r.meta.Reason
		if from == "" {
			from = StatusNeedsAuthorization
		}
		to, err := next(TConnectStarted, from, "")
		if err != nil {
			return nil, err
		}
		if to == StatusPending {
			if from != StatusPending {
				r.meta.Prev, r.meta.PrevReason = from, fromReason
			}
			r.meta.Status, r.meta.Reason = StatusPending, "connect_started"
			r.meta.PendingUntil = ms(now.Add(m.cfg.FlowTTL))
			r.meta.PendingFlow = hashID(state)
		}
		r.meta.Mode = srv.mode
		return append(evs, events(EventConnectStarted, key, by, from, to, "connect_started")...), nil
	}); err != nil {
		return "", err
	}
	m.count(m.stats.Flows, "started")
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if srv.cfg.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", srv.cfg.Resource))
	}
	for k, v := range srv.cfg.AuthorizeParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	return srv.oauth(ep).AuthCodeURL(state, opts...), nil
}

func actorKind(k Key) string {
	if k.UserKey == "" {
		return "admin"
	}
	return "user"
}

func (m *Manager) consumeLink(ctx context.Context, key Key, linkID string) error {
	if len(linkID) > 128 {
		return ErrFlowExpired
	}
	lkey := prefixLink + hashID(linkID)
	var lk link
	ver, err := m.getSealed(ctx, lkey, &lk)
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("connections: link unknown, used or expired: %w", ErrFlowExpired)
	case err != nil:
		return err
	case lk.Key != key:
		return fmt.Errorf("connections: this link was made for another user or server: %w", ErrForbidden)
	}
	switch err := m.store.Delete(ctx, lkey, ver); {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict):
		return fmt.Errorf("connections: link already used: %w", ErrFlowExpired)
	case err != nil:
		return fmt.Errorf("connections: link: %w: %w", ErrUnavailable, err)
	}
	m.links.Delete(key)
	_ = m.store.Delete(ctx, prefixLinkByKey+key.path(), 0)
	return nil
}

// CompleteConnect finishes the flow named by state (single-use): signedIn
// must equal the flow's key; iss (RFC 9207) must match the provider's
// issuer when sent (and is required when the provider advertises it); the
// code is exchanged with the PKCE verifier; the tokens are stored sealed;
// status AUTHORIZED. It returns the flow's returnTo (also on failure once
// the flow is known).
func (m *Manager) CompleteConnect(ctx context.Context, state, code, iss, providerErr string, signedIn Key) (Connection, string, error) {
	f, now, err := m.consumeFlow(ctx, state)
	if err != nil {
		return Connection{}, f.ReturnTo, err
	}
	key := f.Key
	fail := func(reason string, by Actor, err error) (Connection, string, error) {
		m.connectFailed(ctx, key, hashID(state), by, reason, err)
		m.count(m.stats.Flows, "failed")
		return Connection{}, f.ReturnTo, err
	}
	by := Actor{Kind: actorKind(key), ID: key.UserKey}
	if !now.Before(fromMS(f.Created).Add(m.cfg.FlowTTL)) {
		return fail("flow_expired", by, fmt.Errorf("connections: the connect flow expired: %w", ErrFlowExpired))
	}
	if signedIn != key {
		return fail("wrong_user", Actor{Kind: "user", ID: signedIn.UserKey},
			fmt.Errorf("connections: the signed-in user is not the one this connect flow was started for: %w", ErrForbidden))
	}
	srv, err := m.serverFor(key)
	if err != nil {
		return fail("server_changed", by, err)
	}
	if providerErr != "" {
		code := sanitizeCode(providerErr)
		return fail("provider_"+code, Actor{Kind: "provider", ID: key.Server}, fmt.Errorf("%w (%s)", ErrProviderDenied, code))
	}
	ep, err := srv.endpoints(ctx)
	if err != nil {
		return fail("provider_unavailable", by, fmt.Errorf("connections: provider of %q: %w", key.Server, err))
	}
	if reason, err := m.checkIssuer(key.Server, iss, ep); err != nil {
		return fail(reason, by, err)
	}
	if code == "" || len(code) > 4096 || strings.ContainsFunc(code, urlcheck.IsControl) {
		return fail("no_code", by, fmt.Errorf("connections: the callback carries no valid code: %w", ErrForbidden))
	}
	g, err := srv.exchange(ctx, ep, code, f.Verifier)
	if err != nil {
		return fail("exchange_failed", by, fmt.Errorf("connections: code exchange: %w", err))
	}
	r, err := m.storeGrant(ctx, key, by, srv.mode, g)
	if err != nil {
		return fail("store_failed", by, err)
	}
	m.dropUnsaved(key)
	m.count(m.stats.Flows, "completed")
	return r.connection(m.now()), f.ReturnTo, nil
}

// consumeFlow reads the flow named by state and marks it used before
// anything else happens: whatever happens next, the state is dead. It
// returns the flow as read (with its PKCE verifier) and the time it was
// read. On error the flow is zero, except when the flow was already used:
// its ReturnTo is still answered.
func (m *Manager) consumeFlow(ctx context.Context, state string) (flow, time.Time, error) {
	if state == "" || len(state) > 128 {
		return flow{}, time.Time{}, fmt.Errorf("connections: callback without a valid state: %w", ErrFlowExpired)
	}
	fk := prefixFlow + hashID(state)
	var f flow
	ver, err := m.getSealed(ctx, fk, &f)
	switch {
	case errors.Is(err, ErrNotFound):
		return flow{}, time.Time{}, fmt.Errorf("connections: unknown or expired connect flow: %w", ErrFlowExpired)
	case err != nil:
		return flow{}, time.Time{}, err
	case f.Used:
		return f, time.Time{}, fmt.Errorf("connections: this connect flow was already used: %w", ErrForbidden)
	}
	now := m.now()
	used := f
	used.Used, used.Verifier = true, "" // the used marker keeps no verifier
	ct, err := m.sealJSON(fk, used)
	if err != nil {
		return flow{}, time.Time{}, err
	}
	switch _, err := m.store.CompareAndSwap(ctx, fk, ver, ct, flowGrace); {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
		return f, time.Time{}, fmt.Errorf("connections: this connect flow was already used: %w", ErrForbidden)
	case err != nil:
		return flow{}, time.Time{}, fmt.Errorf("connections: callback: %w: %w", ErrUnavailable, err)
	}
	return f, now, nil
}

// checkIssuer applies RFC 9207 to the iss parameter of a callback for
// server: required when the provider advertises it, and equal to the
// provider's issuer when that is known. A refusal comes with its reason.
func (m *Manager) checkIssuer(server, iss string, ep *endpoints) (string, error) {
	switch {
	case iss == "" && ep.issParam:
		return "iss_missing", fmt.Errorf("connections: the provider's answer lacks the iss parameter it advertises (RFC 9207): %w", ErrForbidden)
	case iss != "" && ep.issuer != "" && iss != ep.issuer:
		return "iss_mismatch", fmt.Errorf("connections: the answer comes from another issuer (RFC 9207 iss mismatch): %w", ErrForbidden)
	case iss != "" && ep.issuer == "":
		m.log.Warn("connections: provider sent iss but no issuer is configured to compare it with", "server", server)
	}
	return "", nil
}

// storeGrant seals the tokens of g into key's record, keeping the refresh
// token already held when the provider sent none, and moves the record to
// connected (by is the actor of the event).
func (m *Manager) storeGrant(ctx context.Context, key Key, by Actor, mode string, g *grant) (*record, error) {
	return m.update(ctx, key, func(r *record, _ bool, now time.Time) ([]Event, error) {
		evs := r.settle(key, now)
		from := r.meta.Status
		if from == "" {
			from = StatusNeedsAuthorization
		}
		to, err := next(TConnected, from, "")
		if err != nil {
			return nil, err
		}
		t := g.tok
		refreshExp := g.refreshExpires
		if t.Refresh == "" && len(r.sealed) > 0 {
			// Google-like providers return no refresh token on re-consent:
			// keep the one we hold.
			if old, err := r.open(m.cipher); err == nil && old.Refresh != "" {
				t.Refresh, refreshExp = old.Refresh, fromMS(r.meta.RefreshExpiresAt)
			}
		}
		gen := r.meta.Generation + 1
		sealed, err := seal(m.cipher, key.recKey(), gen, t)
		if err != nil {
			return nil, err
		}
		r.meta = meta{Mode: mode, Status: to, Scopes: g.scopes, ConnectedAt: ms(now),
			LastUsedAt: r.meta.LastUsedAt, AccessExpiresAt: ms(g.expiresAt), RefreshExpiresAt: ms(refreshExp),
			HasRefresh: t.Refresh != "", Generation: gen, TokenURL: g.tokenURL}
		r.sealed = sealed
		return append(evs, events(EventConnected, key, by, from, to, "connected")...), nil
	})
}

// connectFailed restores a pending record to its previous status and
// records why the flow failed.
func (m *Manager) connectFailed(ctx context.Context, key Key, flowID string, by Actor, reason string, cause error) {
	wrote := false
	if _, err := m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
		wrote = false
		if !exists {
			return nil, errNoWrite
		}
		evs := r.settle(key, now)
		from := r.meta.Status
		to, err := next(TConnectFailed, from, r.meta.Prev)
		if err != nil || (from == StatusPending && r.meta.PendingFlow != flowID) {
			if len(evs) == 0 {
				return nil, errNoWrite // nothing pending for this flow, or a newer flow is
			}
			return evs, nil
		}
		wrote = true
		if to != StatusAuthorized {
			r.meta.Status, r.meta.Reason = to, r.meta.PrevReason
			r.meta.Prev, r.meta.PrevReason, r.meta.PendingUntil, r.meta.PendingFlow = "", "", 0, ""
		}
		r.meta.LastError = "connect failed: " + cause.Error()
		return append(evs, events(EventConnectFailed, key, by, from, to, reason)...), nil
	}); err != nil {
		wrote = false
	}
	if !wrote {
		// No status change (nothing pending): still record the attempt.
		m.emit(ctx, []Event{{Type: EventConnectFailed, Key: key, Actor: by, Reason: reason}})
	}
}
