package connections

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

const (
	// lastUsedEvery: LastUsedAt is written at most this often per connection.
	lastUsedEvery = time.Hour
	// leaseExtra is added to the provider timeout for a refresh lease.
	leaseExtra = 5 * time.Second
	// upstreamGrace: 401s within this time after a 401-triggered refresh
	// are about requests that still carried the old token.
	upstreamGrace = 10 * time.Second
	// upstreamWindow: a 401 within this time after a 401-triggered refresh
	// means the new token is refused too: the connection is revoked.
	upstreamWindow = time.Hour
	sweepWorkers   = 4
	leasePoll      = 25 * time.Millisecond
)

// errNoRefresh: the record has no refresh token.
var errNoRefresh = errors.New("connections: no refresh token")

// unsaved is a refresh result the store has not accepted yet (it failed
// after the provider answered): served from memory and written again by
// the next load or sweep, so a rotated refresh token is not dropped.
type unsaved struct {
	gen    int64
	g      *grant
	forced bool
	base   Connection
}

// Token is the Check path: the access token for key, from a short-lived
// in-memory cache (at most 2 s), refreshed lazily when expired (one refresh
// per key across concurrent callers and, through a store lease, across
// replicas; detached from ctx and bounded by the provider timeout).
// Errors: *NeedsAuthorizationError when the user must (re)connect; errors
// wrapping ErrUnavailable for transient provider or store trouble (and for
// stored tokens that do not decrypt, also wrapping store.ErrDecrypt);
// ErrNotFound for a server not registered, ErrForbidden for a user key on a
// service-account server or the reverse (a mode switch not reconciled yet).
func (m *Manager) Token(ctx context.Context, key Key) (Token, error) {
	if _, err := m.serverFor(key); err != nil {
		return Token{}, err // unregistered server, or a key of the other mode
	}
	now := m.now()
	e := m.cache.get(key, now)
	if e == nil {
		var err error
		if e, err = m.load(ctx, key); err != nil {
			return Token{}, err
		}
	}
	if e.usable(now) {
		m.touch(key, e, now)
		return *e.tok, nil
	}
	return m.tokenSlow(ctx, key, e, now)
}

func (m *Manager) tokenSlow(ctx context.Context, key Key, e *entry, now time.Time) (Token, error) {
	if e.openErr != nil {
		return Token{}, e.openErr
	}
	if e.conn.Status != StatusAuthorized {
		return Token{}, &NeedsAuthorizationError{Connection: e.conn}
	}
	if !e.hasRefresh {
		return m.expired(ctx, key)
	}
	if now.Before(e.nextAttempt) {
		return Token{}, fmt.Errorf("connections: refresh for %q is backing off after %d failure(s) (%s): %w",
			key.Server, e.conn.FailCount, e.conn.LastError, ErrUnavailable)
	}
	e2, err := m.refreshShared(ctx, key, needLazy, false)
	if errors.Is(err, errNoRefresh) {
		return m.expired(ctx, key)
	}
	if e2 == nil {
		return Token{}, unavailable(err)
	}
	now = m.now()
	switch {
	case e2.usable(now):
		return *e2.tok, nil
	case e2.openErr != nil:
		return Token{}, e2.openErr
	case e2.conn.Status != StatusAuthorized:
		return Token{}, &NeedsAuthorizationError{Connection: e2.conn}
	case err != nil:
		return Token{}, unavailable(err)
	}
	return Token{}, fmt.Errorf("connections: no usable token for %q (%s): %w", key.Server, e2.conn.LastError, ErrUnavailable)
}

func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("connections: %w: %w", ErrUnavailable, err)
}

// expired moves an AUTHORIZED record whose access token ran out and that has
// no refresh token to EXPIRED, and answers NeedsAuthorization.
func (m *Manager) expired(ctx context.Context, key Key) (Token, error) {
	r, err := m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
		u := r.usableUntil()
		if !exists || r.meta.Status != StatusAuthorized || r.meta.HasRefresh || u.IsZero() || now.Before(u) {
			return nil, errNoWrite
		}
		to, err := next(TAccessExpired, r.meta.Status, "")
		if err != nil {
			return nil, errNoWrite
		}
		from := r.meta.Status
		r.wipe(to, "access_token_expired")
		return events(EventStatusChanged, key, Actor{Kind: "system", ID: "refresher"}, from, to, "access_token_expired"), nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Token{}, &NeedsAuthorizationError{Connection: Connection{Key: key, Status: StatusNeedsAuthorization}}
		}
		return Token{}, err
	}
	e := m.cacheRecord(r, m.now())
	if e.usable(m.now()) {
		return *e.tok, nil
	}
	return Token{}, &NeedsAuthorizationError{Connection: e.conn}
}

// wipe drops the tokens: new generation, no sealed part, status to.
func (r *record) wipe(to Status, reason string) {
	m := &r.meta
	m.Generation++
	r.sealed = nil
	m.Status, m.Reason = to, reason
	m.HasRefresh, m.AccessExpiresAt, m.RefreshExpiresAt = false, 0, 0
	m.FailCount, m.NextAttemptAt, m.Lease = 0, 0, nil
	m.Prev, m.PrevReason, m.PendingUntil, m.PendingFlow = "", "", 0, ""
	m.ForcedGen, m.ForcedAt = 0, 0
}

// load reads key's record into the cache (one store read per key at a time).
func (m *Manager) load(ctx context.Context, key Key) (*entry, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	v, err, _ := m.sf.Do("load\x00"+key.recKey(), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		r, err := m.read(ctx, key)
		now := m.now()
		if u := m.getUnsaved(key); u != nil {
			switch {
			case err != nil && !errors.Is(err, ErrNotFound):
				return m.entryFromGrant(key, u, now), nil // store still down: serve what the provider gave
			case err == nil && r.meta.Generation == u.gen:
				return m.commitRefresh(ctx, key, u.gen, u.g, u.forced, u.base)
			default:
				m.dropUnsaved(key)
			}
		}
		if errors.Is(err, ErrNotFound) {
			e := &entry{conn: Connection{Key: key, Status: StatusNeedsAuthorization}, until: now.Add(cacheTTL)}
			m.cache.put(key, e)
			return e, nil
		}
		if err != nil {
			return nil, err
		}
		return m.cacheRecord(r, now), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry), nil
}

// touch records LastUsedAt, at most once per lastUsedEvery, in the background.
func (m *Manager) touch(key Key, e *entry, now time.Time) {
	if e.touched.Load() || now.Sub(e.conn.LastUsedAt) < lastUsedEvery || !e.touched.CompareAndSwap(false, true) {
		return
	}
	gen := e.conn.Generation
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
			if !exists || r.meta.Generation != gen || now.Sub(fromMS(r.meta.LastUsedAt)) < lastUsedEvery {
				return nil, errNoWrite
			}
			r.meta.LastUsedAt = ms(now)
			return nil, nil
		})
	}()
}

// needFunc decides, on a freshly read record, whether a refresh is still needed.
type needFunc func(r *record, now time.Time) bool

func needLazy(r *record, now time.Time) bool {
	u := r.usableUntil()
	return !u.IsZero() && !now.Before(u) && now.UnixMilli() >= r.meta.NextAttemptAt
}

func needSweep(before time.Duration) needFunc {
	return func(r *record, now time.Time) bool {
		return r.meta.AccessExpiresAt != 0 && !now.Before(r.refreshAt(before)) && now.UnixMilli() >= r.meta.NextAttemptAt
	}
}

func needGeneration(gen int64) needFunc {
	return func(r *record, _ time.Time) bool { return r.meta.Generation == gen }
}

type refreshResult struct {
	e   *entry
	err error
}

// refreshShared runs one refresh per key at a time; the caller waits until
// it ends or ctx is done. The refresh itself is detached from ctx.
func (m *Manager) refreshShared(ctx context.Context, key Key, need needFunc, forced bool) (*entry, error) {
	srv, err := m.serverFor(key)
	if err != nil {
		return nil, err
	}
	ch := m.sf.DoChan("refresh\x00"+key.recKey(), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*srv.cfg.timeout()+leaseExtra)
		defer cancel()
		e, err := m.refresh(rctx, srv, key, need, forced)
		return refreshResult{e, err}, nil
	})
	select {
	case res := <-ch:
		rr := res.Val.(refreshResult)
		return rr.e, rr.err
	case <-ctx.Done():
		return nil, fmt.Errorf("connections: waiting for a token refresh: %w: %w", ErrUnavailable, ctx.Err())
	}
}

// refresh takes the record's lease, calls the provider and writes the
// outcome with compare-and-swap. It returns the resulting cache entry and,
// when the refresh failed, why.
func (m *Manager) refresh(ctx context.Context, srv *server, key Key, need needFunc, forced bool) (*entry, error) {
	deadline := time.Now().Add(srv.cfg.timeout() + leaseExtra)
	var r *record
	for {
		var err error
		if r, err = m.read(ctx, key); err != nil {
			return nil, err
		}
		now := m.now()
		st, _ := r.status(now)
		if (st != StatusAuthorized && st != StatusError) || len(r.sealed) == 0 || !need(r, now) {
			return m.cacheRecord(r, now), nil
		}
		if u := m.getUnsaved(key); u != nil && u.gen == r.meta.Generation {
			// Our last refresh was not stored: store it, never redeem the
			// old refresh token again (a rotating provider refuses it).
			return m.commitRefresh(ctx, key, u.gen, u.g, u.forced, u.base)
		}
		if !r.meta.HasRefresh {
			return m.cacheRecord(r, now), errNoRefresh
		}
		if r.leasedByOther(m.id, now) {
			if time.Now().After(deadline) {
				return m.cacheRecord(r, now), fmt.Errorf("connections: a refresh is in progress on another replica: %w", ErrUnavailable)
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("connections: %w: %w", ErrUnavailable, ctx.Err())
			case <-time.After(leasePoll):
			}
			continue
		}
		l := r.meta.Lease
		resumed := l != nil && (l.Owner != m.id || l.Resumed)
		r.meta.Lease = &lease{Owner: m.id, Until: ms(now.Add(srv.cfg.timeout() + leaseExtra)), Resumed: resumed}
		val, err := r.encode()
		if err != nil {
			return nil, err
		}
		v, err := m.store.CompareAndSwap(ctx, key.recKey(), r.version, val, 0)
		if err == nil {
			r.version = v
			break
		}
		if !errorsIsConflict(err) {
			return nil, fmt.Errorf("connections: refresh lease: %w: %w", ErrUnavailable, err)
		}
	}
	gen := r.meta.Generation
	base := r.connection(m.now())
	toks, err := r.open(m.cipher)
	if err != nil {
		m.releaseLease(ctx, key, gen)
		return nil, err
	}
	ep, err := srv.endpoints(ctx)
	if err == nil && r.meta.TokenURL != "" && r.meta.TokenURL != ep.token {
		// The provider changed under this record: never send its refresh
		// token to another token endpoint.
		return m.refreshFailed(ctx, key, gen, &providerError{op: "token endpoint", kind: kindGrant, msg: "the provider's token endpoint changed"}, "provider_changed")
	}
	var g *grant
	if err == nil {
		g, err = srv.refresh(ctx, ep, toks.Refresh)
	}
	if m.afterProvider != nil {
		m.afterProvider(key)
	}
	if err != nil {
		return m.refreshFailed(ctx, key, gen, classify("token endpoint", err), "")
	}
	g.tokenURL = ep.token
	return m.commitRefresh(ctx, key, gen, g, forced, base)
}

func errorsIsConflict(err error) bool {
	return errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound)
}

// releaseLease drops this Manager's lease on key (best effort).
func (m *Manager) releaseLease(ctx context.Context, key Key, gen int64) {
	_, _ = m.update(ctx, key, func(r *record, exists bool, _ time.Time) ([]Event, error) {
		if !exists || r.meta.Generation != gen || r.meta.Lease == nil || r.meta.Lease.Owner != m.id {
			return nil, errNoWrite
		}
		r.meta.Lease = nil
		return nil, nil
	})
}

// commitRefresh writes refreshed tokens, in one compare-and-swap with the
// status, unless the record moved on (revoked, or refreshed elsewhere). If
// the store fails, the grant is kept in memory (served and written later).
func (m *Manager) commitRefresh(ctx context.Context, key Key, gen int64, g *grant, forced bool, base Connection) (*entry, error) {
	discarded := false
	r, err := m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
		discarded = !exists || r.meta.Generation != gen
		from := r.meta.Status
		to, err := next(TRefreshed, from, "")
		if discarded || err != nil {
			discarded = true
			return nil, errNoWrite
		}
		sealed, err := seal(m.cipher, key.recKey(), gen+1, g.tok)
		if err != nil {
			return nil, err
		}
		md := &r.meta
		md.Generation, r.sealed = gen+1, sealed
		md.Status, md.Reason, md.LastError = to, "", ""
		md.FailCount, md.NextAttemptAt, md.Lease = 0, 0, nil
		md.LastRefreshedAt, md.AccessExpiresAt = ms(now), ms(g.expiresAt)
		if g.rotated || !g.refreshExpires.IsZero() {
			md.RefreshExpiresAt = ms(g.refreshExpires)
		}
		md.HasRefresh, md.Scopes = g.tok.Refresh != "", g.scopes
		if g.tokenURL != "" {
			md.TokenURL = g.tokenURL
		}
		if forced {
			md.ForcedGen, md.ForcedAt = gen+1, ms(now)
		}
		return events(EventRefreshed, key, Actor{Kind: "system", ID: "refresher"}, from, to, "refreshed"), nil
	})
	now := m.now()
	switch {
	case err != nil && (errors.Is(err, ErrUnavailable)):
		m.setUnsaved(key, &unsaved{gen: gen, g: g, forced: forced, base: base})
		m.count(m.stats.Refreshes, "unsaved")
		m.log.Error("connections: refreshed tokens could not be stored; serving them from memory and retrying",
			"key", key, "error", err)
		return m.entryFromGrant(key, &unsaved{gen: gen, g: g, base: base}, now), nil
	case err != nil:
		return nil, err
	case discarded:
		m.dropUnsaved(key)
		m.count(m.stats.Refreshes, "discarded")
		m.log.Info("connections: refresh result discarded: the record changed meanwhile", "key", key)
		if r.meta.Status == StatusRevoked && g.rotated {
			if srv := m.server(key.Server); srv != nil {
				srv.revoke(ctx, g.tok.Refresh, "refresh_token")
			}
		}
		return m.cacheRecord(r, now), nil
	}
	m.dropUnsaved(key)
	m.count(m.stats.Refreshes, "success")
	if e := m.cache.get(key, now); e != nil && e.conn.Generation == r.meta.Generation {
		return e, nil
	}
	return m.cacheRecord(r, now), nil
}

// refreshFailed records a failed refresh: invalid_grant ends the grant
// (REVOKED, or EXPIRED when the refresh token's known life ran out); other
// failures count, back off, and become ERROR after MaxFailures in a row.
func (m *Manager) refreshFailed(ctx context.Context, key Key, gen int64, pe *providerError, reason string) (*entry, error) {
	r, err := m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
		if !exists || r.meta.Generation != gen {
			return nil, errNoWrite // refreshed or revoked elsewhere: that is the answer
		}
		md := &r.meta
		from := md.Status
		resumed := false
		if md.Lease != nil && md.Lease.Owner == m.id {
			resumed = md.Lease.Resumed
			md.Lease = nil
		}
		md.LastError = pe.Error()
		if pe.kind == kindGrant {
			t, why := TRefreshRevoked, "refresh_invalid_grant"
			switch {
			case reason != "":
				why = reason
			case md.RefreshExpiresAt != 0 && now.UnixMilli() >= md.RefreshExpiresAt:
				t, why = TRefreshExpired, "refresh_token_expired"
			case resumed:
				why = "refresh_interrupted"
			}
			to, err := next(t, from, "")
			if err != nil {
				return nil, errNoWrite
			}
			r.wipe(to, why)
			md.LastError = pe.Error()
			return events(EventRefreshFailed, key, Actor{Kind: "provider", ID: key.Server}, from, to, why), nil
		}
		md.FailCount++
		md.NextAttemptAt = ms(now.Add(backoff(md.FailCount, from == StatusError)))
		t, why := TRefreshFailed, "refresh_unavailable"
		if pe.kind == kindRejected {
			why = "refresh_rejected"
		}
		if from == StatusAuthorized && md.FailCount >= m.cfg.MaxFailures {
			t = TRefreshGaveUp
		}
		to, err := next(t, from, "")
		if err != nil {
			return nil, errNoWrite
		}
		if to != from {
			md.Status, md.Reason = to, "refresh_failed"
		}
		return events(EventRefreshFailed, key, Actor{Kind: "system", ID: "refresher"}, from, to, why), nil
	})
	switch pe.kind {
	case kindGrant:
		m.count(m.stats.Refreshes, "invalid_grant")
	case kindTransient:
		m.count(m.stats.Refreshes, "transient")
	default:
		m.count(m.stats.Refreshes, "rejected")
	}
	m.log.Warn("connections: token refresh failed", "key", key, "error", pe)
	if err != nil {
		return nil, err
	}
	e := m.cacheRecord(r, m.now())
	if r.meta.Generation != gen {
		return e, nil // someone else's outcome
	}
	return e, fmt.Errorf("connections: refresh for %q: %w", key.Server, pe)
}

// backoff is 30s·2^(n-1) plus up to 10% jitter, at most 30m (1h in ERROR).
func backoff(n int, inError bool) time.Duration {
	d, limit := 30*time.Second, 30*time.Minute
	if inError {
		limit = time.Hour
	}
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d + rand.N(d/10+1)
}

func (m *Manager) setUnsaved(key Key, u *unsaved) {
	m.unsavedMu.Lock()
	m.unsaved[key] = u
	m.unsavedMu.Unlock()
}

func (m *Manager) getUnsaved(key Key) *unsaved {
	m.unsavedMu.Lock()
	defer m.unsavedMu.Unlock()
	return m.unsaved[key]
}

func (m *Manager) dropUnsaved(key Key) {
	m.unsavedMu.Lock()
	delete(m.unsaved, key)
	m.unsavedMu.Unlock()
}

// entryFromGrant caches a grant the store has not accepted yet.
func (m *Manager) entryFromGrant(key Key, u *unsaved, now time.Time) *entry {
	c := u.base
	c.Status, c.Reason, c.Scopes = StatusAuthorized, "", u.g.scopes
	c.AccessExpiresAt, c.LastRefreshedAt = u.g.expiresAt, now
	e := &entry{conn: c, until: now.Add(cacheTTL), hasRefresh: u.g.tok.Refresh != ""}
	e.tok = &Token{AccessToken: u.g.tok.Access, TokenType: u.g.tok.TokenType, Scopes: c.Scopes, ExpiresAt: c.AccessExpiresAt, Connection: c}
	if !c.AccessExpiresAt.IsZero() {
		e.usableUntil = c.AccessExpiresAt.Add(-min(10*time.Second, c.AccessExpiresAt.Sub(now)/10))
	}
	m.cache.put(key, e)
	return e
}

// Revoke deletes the tokens now (the next Token call fails), bumps the
// generation, sets REVOKED with reason (default "user_revoked" or
// "admin_revoked" by actor kind), records an audit event with the actor,
// and calls the provider's RFC 7009 endpoint (best effort, bounded).
func (m *Manager) Revoke(ctx context.Context, key Key, by Actor, reason string) error {
	if reason == "" {
		reason = "revoked"
		if by.Kind == "user" || by.Kind == "admin" {
			reason = by.Kind + "_revoked"
		}
	}
	return m.revoke(ctx, key, by, reason, TRevoked)
}

func (m *Manager) revoke(ctx context.Context, key Key, by Actor, reason string, t Transition) error {
	var (
		old      tokens
		had      bool
		tokenURL string
	)
	_, err := m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
		had = false
		if !exists {
			return nil, fmt.Errorf("connections: revoke: %w", ErrNotFound)
		}
		evs := r.settle(key, now)
		from := r.meta.Status
		if from == StatusRevoked && len(r.sealed) == 0 {
			if len(evs) == 0 {
				return nil, errNoWrite
			}
			return evs, nil
		}
		to, err := next(t, from, "")
		if err != nil {
			return nil, err
		}
		if len(r.sealed) > 0 {
			if o, err := r.open(m.cipher); err == nil {
				old, had, tokenURL = o, true, r.meta.TokenURL
			}
		}
		r.wipe(to, reason)
		r.meta.LastError = ""
		return append(evs, events(EventRevoked, key, by, from, to, reason)...), nil
	})
	if err != nil {
		return err
	}
	m.dropUnsaved(key)
	m.links.Delete(key)
	if had {
		// Only to the provider that issued the tokens (a mode switch may
		// have put another provider behind the same server id).
		if srv := m.server(key.Server); srv != nil {
			if ep, err := srv.endpoints(ctx); err == nil && (tokenURL == "" || tokenURL == ep.token) {
				if old.Refresh != "" {
					srv.revoke(ctx, old.Refresh, "refresh_token")
				} else {
					srv.revoke(ctx, old.Access, "access_token")
				}
			}
		}
		old = tokens{}
	}
	return nil
}

// UpstreamRejected reports that the upstream answered 401 to this key's
// token: the token is refreshed once; if the refreshed token is refused too
// (a 401 between 10 s and 1 h after that refresh), or there is nothing to
// refresh with, the connection is REVOKED (reason "upstream_rejected").
func (m *Manager) UpstreamRejected(ctx context.Context, key Key) error {
	r, err := m.read(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	now := m.now()
	if st, _ := r.status(now); st != StatusAuthorized {
		return nil
	}
	if md := r.meta; md.ForcedGen != 0 && md.ForcedGen == md.Generation {
		switch age := now.Sub(fromMS(md.ForcedAt)); {
		case age < upstreamGrace:
			return nil
		case age < upstreamWindow:
			return m.revoke(ctx, key, Actor{Kind: "provider", ID: key.Server}, "upstream_rejected", TUpstreamRejected)
		}
	}
	return m.rejectRefresh(ctx, key, r.meta.Generation)
}

// UpstreamRejectedGeneration is UpstreamRejected for the token of one
// generation (Token's Connection.Generation): a 401 to an older generation
// is ignored, a 401 to a token that a 401 already refreshed revokes.
func (m *Manager) UpstreamRejectedGeneration(ctx context.Context, key Key, gen int64) error {
	r, err := m.read(ctx, key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	if st, _ := r.status(m.now()); st != StatusAuthorized || r.meta.Generation != gen {
		return nil
	}
	if r.meta.ForcedGen == gen {
		return m.revoke(ctx, key, Actor{Kind: "provider", ID: key.Server}, "upstream_rejected", TUpstreamRejected)
	}
	return m.rejectRefresh(ctx, key, gen)
}

func (m *Manager) rejectRefresh(ctx context.Context, key Key, gen int64) error {
	e, err := m.refreshShared(ctx, key, needGeneration(gen), true)
	switch {
	case errors.Is(err, errNoRefresh):
		return m.revoke(ctx, key, Actor{Kind: "provider", ID: key.Server}, "upstream_rejected", TUpstreamRejected)
	case e == nil:
		return unavailable(err)
	case e.conn.Status != StatusAuthorized, e.conn.Generation != gen:
		return nil // refreshed, or the refresh ended the connection
	}
	return unavailable(err)
}

// Wait blocks until the background writes a lookup may start (recording
// LastUsedAt) have ended. Run calls it on return; a caller that never runs
// the Manager calls it before closing the Store.
func (m *Manager) Wait() { m.wg.Wait() }

// Run refreshes connections in the background until ctx is done: a sweep
// at start and then every RefreshInterval. It returns once its background
// writes have ended.
func (m *Manager) Run(ctx context.Context) {
	defer m.Wait()
	m.sweep(ctx)
	t := time.NewTicker(m.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sweep(ctx)
		}
	}
}

// sweepReport says what one sweep did.
type sweepReport struct {
	records, due, abandoned, expired int
	storeTime                        time.Duration
}

// sweep reads every record once, counts statuses, and refreshes the due
// ones (AUTHORIZED, or ERROR after its back-off) with a few workers.
func (m *Manager) sweep(ctx context.Context) sweepReport {
	now := m.now()
	m.sweepStore.Store(0)
	counts := map[string]map[Status]int{}
	var due, abandoned, expired []Key
	rep := sweepReport{}
	m.retryUnsaved(ctx)
	err := m.scan(ctx, func(r *record) {
		rep.records++
		st, _ := r.status(now)
		c := counts[r.key.Server]
		if c == nil {
			c = map[Status]int{}
			counts[r.key.Server] = c
		}
		c[st]++
		srv := m.server(r.key.Server)
		if srv == nil || srv.mode != r.meta.Mode {
			return // Reconcile's business
		}
		switch {
		case r.meta.Status == StatusPending && st != StatusPending:
			abandoned = append(abandoned, r.key)
		case (st != StatusAuthorized && st != StatusError) || len(r.sealed) == 0 || r.meta.AccessExpiresAt == 0:
		case !r.meta.HasRefresh:
			if u := r.usableUntil(); st == StatusAuthorized && !now.Before(u) {
				expired = append(expired, r.key)
			}
		case needSweep(srv.cfg.refreshBefore())(r, now) && !r.leasedByOther(m.id, now):
			due = append(due, r.key)
		}
	})
	rep.storeTime = time.Duration(m.sweepStore.Load())
	if err != nil {
		m.log.Warn("connections: sweep", "error", err)
	}
	rep.due, rep.abandoned, rep.expired = len(due), len(abandoned), len(expired)
	for _, k := range abandoned {
		m.abandon(ctx, k)
	}
	for _, k := range expired {
		_, _ = m.expired(ctx, k)
	}
	work := make(chan Key)
	var wg sync.WaitGroup
	for range sweepWorkers {
		wg.Go(func() {
			for k := range work {
				srv := m.server(k.Server)
				if srv == nil {
					continue
				}
				_, _ = m.refreshShared(ctx, k, needSweep(srv.cfg.refreshBefore()), false)
			}
		})
	}
	for _, k := range due {
		work <- k
	}
	close(work)
	wg.Wait()
	m.cache.purge(m.now())
	m.links.Range(func(k, v any) bool {
		if !m.now().Before(v.(linkEntry).until) {
			m.links.Delete(k)
		}
		return true
	})
	if err == nil {
		m.statsMu.Lock()
		m.stats.ByServerStatus = counts
		m.statsMu.Unlock()
	}
	m.log.Debug("connections: sweep done", "records", rep.records, "due", rep.due, "store_time", rep.storeTime)
	return rep
}

// abandon restores a pending record whose flow expired.
func (m *Manager) abandon(ctx context.Context, key Key) {
	_, _ = m.update(ctx, key, func(r *record, exists bool, now time.Time) ([]Event, error) {
		if !exists {
			return nil, errNoWrite
		}
		if evs := r.settle(key, now); len(evs) > 0 {
			return evs, nil
		}
		return nil, errNoWrite
	})
}

func (m *Manager) retryUnsaved(ctx context.Context) {
	m.unsavedMu.Lock()
	pending := make(map[Key]*unsaved, len(m.unsaved))
	for k, u := range m.unsaved {
		pending[k] = u
	}
	m.unsavedMu.Unlock()
	for k, u := range pending {
		_, _ = m.commitRefresh(ctx, k, u.gen, u.g, u.forced, u.base)
	}
}
