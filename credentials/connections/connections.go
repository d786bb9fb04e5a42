// Package connections keeps per-user (and per-organization) upstream OAuth
// connections: the provider tokens a user granted mcpauthz for one MCP
// server, or the single connection an admin authorized for an organization
// ("service_account" with OAuth).
//
// A [Manager] runs the connect flow (authorization code + PKCE S256,
// single-use state bound to the key it was started for, RFC 9207 iss
// check, RFC 8707 resource), stores the tokens sealed with the store's
// [store.Cipher] (AAD = record key ‖ generation), hands out access tokens
// on the Check path from a short-lived in-memory cache ([Manager.Token]),
// refreshes them lazily (singleflight per key) and in the background
// ([Manager.Run]) with a store lease and compare-and-swap so that replicas
// sharing a store never refresh one row twice, and revokes them (user,
// admin, provider, mode switch) with an audit event each time.
//
// Every connection has one [Status]; changes go through an explicit table
// of named transitions (lifecycle.go) and illegal ones are refused.
//
// Tokens never appear in errors, events, logs or String output: [Token]
// redacts itself, events carry no token fields, and provider errors keep
// only the HTTP status and the registered RFC 6749 error code.
//
// A Manager is safe for concurrent use.
package connections

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// Status is a connection's lifecycle state.
type Status string

// The statuses.
const (
	StatusNeedsAuthorization Status = "NEEDS_AUTHORIZATION"
	StatusPending            Status = "PENDING"
	StatusAuthorized         Status = "AUTHORIZED"
	StatusExpired            Status = "EXPIRED"
	StatusRevoked            Status = "REVOKED"
	StatusError              Status = "ERROR"
)

// Key identifies a connection. UserKey "" = the organization's
// admin-authorized service-account connection for Server.
type Key struct{ Org, UserKey, Server string }

// LogValue logs the key's parts (none is secret).
func (k Key) LogValue() slog.Value {
	return slog.GroupValue(slog.String("org", k.Org), slog.String("user", k.UserKey), slog.String("server", k.Server))
}

// Connection is a record without secrets (safe to log, list, render).
type Connection struct {
	Key       Key
	Mode      string // "individual" | "service_account"
	Status    Status
	Reason    string // short snake_case, e.g. "user_revoked", "refresh_invalid_grant", "mode_switch"
	LastError string // human text, never a token
	FailCount int
	Scopes    []string // granted by the provider

	ConnectedAt, UpdatedAt, LastUsedAt, LastRefreshedAt, AccessExpiresAt time.Time

	Generation int64
}

// Actor says who did something (audit). Kind: "user" | "admin" | "provider" | "system".
type Actor struct{ Kind, ID string }

// Event is one audit event (never a token). Type: connect_started,
// connected, connect_failed, refreshed, refresh_failed, revoked,
// status_changed.
type Event struct {
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`
	Key    Key       `json:"key"`
	Actor  Actor     `json:"actor"`
	From   Status    `json:"from,omitempty"`
	To     Status    `json:"to,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// Token is an access token for the upstream. It redacts AccessToken in
// every printing path (fmt, slog, JSON).
type Token struct {
	AccessToken, TokenType string
	Scopes                 []string
	ExpiresAt              time.Time
	Connection             Connection
}

func (t Token) String() string {
	return fmt.Sprintf("connections.Token{type=%s scopes=%s expires=%s key=%s/%s/%s access_token=[redacted]}",
		t.TokenType, strings.Join(t.Scopes, ","), t.ExpiresAt.Format(time.RFC3339), t.Connection.Key.Org, t.Connection.Key.UserKey, t.Connection.Key.Server)
}

// GoString is String.
func (t Token) GoString() string { return t.String() }

// Format prints String for every verb.
func (t Token) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, t.String()) }

// LogValue logs everything but the token.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", t.TokenType), slog.Any("scopes", t.Scopes),
		slog.Time("expires_at", t.ExpiresAt), slog.Any("key", t.Connection.Key))
}

// MarshalJSON encodes everything but the token.
func (t Token) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"token_type":%q,"access_token":"[redacted]"}`, t.TokenType), nil
}

// NeedsAuthorizationError says the user (or, for a service account, an
// admin) must connect or reconnect. Connection is the zero value with
// StatusNeedsAuthorization and the Key when no record exists.
type NeedsAuthorizationError struct{ Connection Connection }

func (e *NeedsAuthorizationError) Error() string {
	c := e.Connection
	msg := fmt.Sprintf("connections: server %q needs authorization (status %s", c.Key.Server, c.Status)
	if c.Reason != "" {
		msg += ", reason " + c.Reason
	}
	return msg + ")"
}

// Sentinel errors, matched with errors.Is.
var (
	// ErrUnavailable: transient provider or store trouble; retry later.
	ErrUnavailable = errors.New("connections: temporarily unavailable")
	// ErrNotFound: no such connection, link or registered server.
	ErrNotFound = errors.New("connections: not found")
	// ErrForbidden: the request may not act on this key (another user's
	// link or flow, a replayed state, an iss mismatch, a mode mismatch).
	ErrForbidden = errors.New("connections: forbidden")
	// ErrFlowExpired: the connect link or flow is unknown or expired.
	ErrFlowExpired = errors.New("connections: connect flow expired or unknown")
	// ErrProviderDenied: the provider redirected back with an error (the
	// user declined, for example).
	ErrProviderDenied = errors.New("connections: the provider refused the authorization")
)

// Filter selects connections for List. Empty fields match everything;
// ServiceAccounts selects only the organization-wide (UserKey "") records.
type Filter struct {
	Org, UserKey, Server string
	Status               Status
	ServiceAccounts      bool
}

// Stats are counters for metrics. ByServerStatus is recomputed by each
// background sweep (server -> status -> count); Refreshes counts refresh
// outcomes (success, invalid_grant, transient, rejected, discarded); Flows
// counts connect flows (started, completed, failed).
type Stats struct {
	ByServerStatus map[string]map[Status]int
	Refreshes      map[string]uint64
	Flows          map[string]uint64
}

// Options are the Manager's collaborators.
type Options struct {
	Store      store.Store  // required
	Cipher     store.Cipher // required
	HTTPClient *http.Client // base client for provider calls (copied and bounded)
	Now        func() time.Time
	Logger     *slog.Logger
	// Audit receives every event (synchronously: it must not block). Events
	// are also kept in the store for History.
	Audit func(Event)
}

// Manager owns the connections of one deployment. Safe for concurrent use.
type Manager struct {
	cfg    Config
	store  store.Store
	cipher store.Cipher
	hc     *http.Client
	now    func() time.Time
	log    *slog.Logger
	audit  func(Event)
	id     string // lease owner id, random per Manager

	mu      sync.Mutex // serializes Register
	servers atomic.Pointer[map[string]*server]

	cache *cache
	links sync.Map // Key -> linkEntry
	sf    singleflight.Group

	unsavedMu sync.Mutex
	unsaved   map[Key]*unsaved // refreshed tokens the store has not accepted yet

	evMu    sync.Mutex
	evCount map[string]int
	evSeq   atomic.Int64

	statsMu sync.Mutex
	stats   Stats

	wg sync.WaitGroup // background writes (touch)

	// afterProvider, when set (tests), runs after the provider answered a
	// refresh and before the result is written.
	afterProvider func(Key)
	sweepStore    atomic.Int64 // nanoseconds of store time in the last sweep
}

// New checks cfg and returns a Manager. Register every server, then call
// Reconcile and start Run.
func New(ctx context.Context, cfg Config, opts Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connections: invalid config: %w", err)
	}
	if opts.Store == nil || opts.Cipher == nil {
		return nil, errors.New("connections: Options.Store and Options.Cipher are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Audit == nil {
		opts.Audit = func(Event) {}
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	m := &Manager{
		cfg: cfg.withDefaults(), store: opts.Store, cipher: opts.Cipher, hc: opts.HTTPClient,
		now: opts.Now, log: opts.Logger, audit: opts.Audit, id: hex.EncodeToString(id[:]),
		cache: newCache(), unsaved: map[Key]*unsaved{}, evCount: map[string]int{},
		stats: Stats{ByServerStatus: map[string]map[Status]int{}, Refreshes: map[string]uint64{}, Flows: map[string]uint64{}},
	}
	m.servers.Store(&map[string]*server{})
	return m, nil
}

// String describes the Manager without its caches (which hold tokens).
func (m *Manager) String() string {
	return fmt.Sprintf("connections.Manager{public_url=%s servers=%d}", m.cfg.PublicURL, len(*m.servers.Load()))
}

// Format prints String for every verb, so fmt never reflects over caches.
func (m *Manager) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, m.String()) }

// Register declares a server's provider and mode ("individual" |
// "service_account"). Call it once per server at start-up, before Run.
// The redirect URI is PublicURL + "/connect/callback".
func (m *Manager) Register(serverID, mode string, p ProviderConfig) error {
	if serverID == "" {
		return errors.New("connections: register: empty server id")
	}
	if mode != ModeIndividual && mode != ModeServiceAccount {
		return fmt.Errorf("connections: register %q: unknown mode %q (want individual or service_account)", serverID, mode)
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("connections: register %q: %w", serverID, err)
	}
	s := &server{id: serverID, mode: mode, cfg: p, hc: newHTTPClient(m.hc, p.timeout()),
		redirect: m.cfg.PublicURL + "/connect/callback", log: m.log, now: m.now}
	if p.ClientSecret != nil {
		v, err := p.ClientSecret.Resolve()
		if err != nil {
			return fmt.Errorf("connections: register %q: client_secret: %w", serverID, err)
		}
		s.secret = v
	}
	m.mu.Lock()
	next := maps.Clone(*m.servers.Load())
	next[serverID] = s
	m.servers.Store(&next)
	m.mu.Unlock()
	return nil
}

func (m *Manager) server(id string) *server {
	return (*m.servers.Load())[id]
}

// serverFor returns the registered server of key, checking that the key's
// kind (user or organization) matches the server's mode.
func (m *Manager) serverFor(key Key) (*server, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	s := m.server(key.Server)
	if s == nil {
		return nil, fmt.Errorf("connections: server %q is not registered: %w", key.Server, ErrNotFound)
	}
	if (key.UserKey == "") != (s.mode == ModeServiceAccount) {
		return nil, fmt.Errorf("connections: server %q is in mode %s: %w", key.Server, s.mode, ErrForbidden)
	}
	return s, nil
}

// Reconcile revokes (reason "mode_switch"; "server_removed" when the server
// is no longer registered) every stored connection whose server is not
// registered with the record's mode. Call it after all Register calls.
func (m *Manager) Reconcile(ctx context.Context) error {
	var errs []error
	err := m.scan(ctx, func(r *record) {
		if r.meta.Status == StatusRevoked && len(r.sealed) == 0 {
			return
		}
		s := m.server(r.key.Server)
		reason := "mode_switch"
		switch {
		case s == nil:
			reason = "server_removed"
		case s.mode == r.meta.Mode:
			return
		}
		if err := m.revoke(ctx, r.key, Actor{Kind: "system", ID: "reconcile"}, reason, TModeSwitch); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	})
	return errors.Join(append(errs, err)...)
}

// scanPage is the page size of full scans. store.SQLite.List pages cost
// O(position of after) (its lower bound is the prefix), so larger pages
// keep a sweep of 100,000 rows from going quadratic.
const scanPage = 2000

// scan calls f for every record, in key order.
func (m *Manager) scan(ctx context.Context, f func(*record)) error {
	return m.scanPrefix(ctx, prefixRec, f)
}

func (m *Manager) scanPrefix(ctx context.Context, prefix string, f func(*record)) error {
	after := ""
	for {
		t0 := time.Now()
		page, err := m.store.List(ctx, prefix, after, scanPage)
		m.sweepStore.Add(int64(time.Since(t0)))
		if err != nil {
			return fmt.Errorf("connections: list: %w: %w", ErrUnavailable, err)
		}
		for _, e := range page {
			after = e.Key
			key, err := parseKey(e.Key, prefixRec)
			if err != nil {
				m.log.Warn("connections: skipping a malformed record key", "error", err)
				continue
			}
			r, err := decodeRecord(key, e.Value, e.Version)
			if err != nil {
				m.log.Warn("connections: skipping a malformed record", "key", key, "error", err)
				continue
			}
			f(r)
		}
		if len(page) < scanPage {
			return nil
		}
	}
}

// Status is what policy input sees: the connection from the same cache as
// Token, or the zero Connection with StatusNeedsAuthorization when none exists.
func (m *Manager) Status(ctx context.Context, key Key) (Connection, error) {
	e := m.cache.get(key, m.now())
	if e == nil {
		var err error
		if e, err = m.load(ctx, key); err != nil {
			return Connection{Key: key, Status: StatusNeedsAuthorization}, err
		}
	}
	return e.conn, nil
}

// Get reads a connection from the store (no cache).
func (m *Manager) Get(ctx context.Context, key Key) (Connection, error) {
	r, err := m.read(ctx, key)
	if err != nil {
		return Connection{}, err
	}
	return r.connection(m.now()), nil
}

// List returns the connections matching f, in key order.
func (m *Manager) List(ctx context.Context, f Filter) ([]Connection, error) {
	prefix := prefixRec
	if f.Org != "" {
		prefix += escapePart(f.Org) + "/"
		if f.ServiceAccounts {
			prefix += escapePart("") + "/"
		} else if f.UserKey != "" {
			prefix += escapePart(f.UserKey) + "/"
		}
	}
	now := m.now()
	var out []Connection
	err := m.scanPrefix(ctx, prefix, func(r *record) {
		c := r.connection(now)
		switch {
		case f.Org != "" && c.Key.Org != f.Org,
			f.ServiceAccounts && c.Key.UserKey != "",
			!f.ServiceAccounts && f.UserKey != "" && c.Key.UserKey != f.UserKey,
			f.Server != "" && c.Key.Server != f.Server,
			f.Status != "" && c.Status != f.Status:
			return
		}
		out = append(out, c)
	})
	return out, err
}

// Stats returns a copy of the counters.
func (m *Manager) Stats() Stats {
	m.statsMu.Lock()
	defer m.statsMu.Unlock()
	out := Stats{ByServerStatus: make(map[string]map[Status]int, len(m.stats.ByServerStatus)),
		Refreshes: maps.Clone(m.stats.Refreshes), Flows: maps.Clone(m.stats.Flows)}
	for s, c := range m.stats.ByServerStatus {
		out.ByServerStatus[s] = maps.Clone(c)
	}
	return out
}

func (m *Manager) count(which map[string]uint64, label string) {
	m.statsMu.Lock()
	which[label]++
	m.statsMu.Unlock()
}

// RotateKey re-seals, under the cipher's primary key, every connection
// record, flow and link not sealed with it yet (store.KeyID), keeping each
// record's binding (AAD) and generation. It returns how many it rewrote.
// Run it after making a new key primary, before removing the old one.
func (m *Manager) RotateKey(ctx context.Context) (int, error) {
	primary := ""
	if p, ok := m.cipher.(interface{ Primary() string }); ok {
		primary = p.Primary()
	}
	stale := func(ct []byte) bool {
		id, err := store.KeyID(ct)
		return len(ct) > 0 && (primary == "" || err != nil || id != primary)
	}
	n := 0
	var errs []error
	err := m.scan(ctx, func(r *record) {
		if !stale(r.sealed) {
			return
		}
		wrote := false
		_, err := m.update(ctx, r.key, func(r *record, exists bool, _ time.Time) ([]Event, error) {
			if wrote = exists && stale(r.sealed); !wrote {
				return nil, errNoWrite
			}
			t, err := r.open(m.cipher)
			if err != nil {
				return nil, err
			}
			r.sealed, err = seal(m.cipher, r.key.recKey(), r.meta.Generation, t)
			return nil, err
		})
		switch {
		case err != nil:
			errs = append(errs, err)
		case wrote:
			n++
		}
	})
	errs = append(errs, err)
	for _, prefix := range []string{prefixFlow, prefixLink, prefixLinkByKey} {
		k, err := m.resealRaw(ctx, prefix, stale)
		n += k
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// resealRaw re-seals values sealed with aad = their own store key.
func (m *Manager) resealRaw(ctx context.Context, prefix string, stale func([]byte) bool) (int, error) {
	n, after := 0, ""
	for {
		page, err := m.store.List(ctx, prefix, after, 500)
		if err != nil {
			return n, fmt.Errorf("connections: rotate: %w", err)
		}
		for _, e := range page {
			after = e.Key
			if !stale(e.Value) {
				continue
			}
			pt, err := m.cipher.Decrypt(e.Value, []byte(e.Key))
			if err != nil {
				return n, fmt.Errorf("connections: rotate: %w", err)
			}
			ct, err := m.cipher.Encrypt(pt, []byte(e.Key))
			clear(pt)
			if err != nil {
				return n, fmt.Errorf("connections: rotate: %w", err)
			}
			var ttl time.Duration
			if !e.ExpiresAt.IsZero() {
				if ttl = e.ExpiresAt.Sub(m.now()); ttl <= 0 {
					continue
				}
			}
			switch _, err := m.store.CompareAndSwap(ctx, e.Key, e.Version, ct, ttl); {
			case err == nil:
				n++
			case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			default:
				return n, fmt.Errorf("connections: rotate: %w", err)
			}
		}
		if len(page) < 500 {
			return n, nil
		}
	}
}

// errNoWrite tells update to leave the record as it is.
var errNoWrite = errors.New("no write")

// mutation changes r in place (exists: the record was found) and returns
// the events to emit once the write lands. It may be called several times
// (compare-and-swap retries), each time on a freshly read record.
type mutation func(r *record, exists bool, now time.Time) ([]Event, error)

// read returns key's record, ErrNotFound, or an error wrapping ErrUnavailable.
func (m *Manager) read(ctx context.Context, key Key) (*record, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	v, ver, err := m.store.Get(ctx, key.recKey())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("connections: read: %w: %w", ErrUnavailable, err)
	}
	return decodeRecord(key, v, ver)
}

// update applies fn to key's record with compare-and-swap, retrying on
// conflicts, then refreshes the local cache and emits the events.
func (m *Manager) update(ctx context.Context, key Key, fn mutation) (*record, error) {
	for range 16 {
		r, err := m.read(ctx, key)
		exists := err == nil
		switch {
		case errors.Is(err, ErrNotFound):
			r = &record{key: key}
		case err != nil:
			return nil, err
		}
		now := m.now()
		evs, err := fn(r, exists, now)
		if errors.Is(err, errNoWrite) {
			if !exists {
				return nil, ErrNotFound
			}
			return r, nil
		}
		if err != nil {
			return nil, err
		}
		r.meta.UpdatedAt = ms(now)
		val, err := r.encode()
		if err != nil {
			return nil, err
		}
		var v store.Version
		if exists {
			v, err = m.store.CompareAndSwap(ctx, key.recKey(), r.version, val, 0)
		} else {
			var created bool
			v, created, err = m.store.PutIfAbsent(ctx, key.recKey(), val, 0)
			if err == nil && !created {
				err = store.ErrConflict
			}
		}
		switch {
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			return nil, fmt.Errorf("connections: write: %w: %w", ErrUnavailable, err)
		}
		r.version = v
		m.cacheRecord(r, now)
		m.emit(ctx, evs)
		return r, nil
	}
	return nil, fmt.Errorf("connections: write: %w: too many concurrent updates", ErrUnavailable)
}

// cacheRecord publishes what this replica knows about r.
func (m *Manager) cacheRecord(r *record, now time.Time) *entry {
	e := &entry{conn: r.connection(now), until: now.Add(cacheTTL), hasRefresh: r.meta.HasRefresh,
		nextAttempt: fromMS(r.meta.NextAttemptAt)}
	if e.conn.Status == StatusAuthorized && len(r.sealed) > 0 {
		t, err := r.open(m.cipher)
		if err != nil {
			m.log.Error("connections: stored tokens cannot be decrypted (tampered, moved, or sealed with a key not in the ring)",
				"key", r.key, "error", err)
			e.openErr = err
		} else {
			e.tok = &Token{AccessToken: t.Access, TokenType: t.TokenType, Scopes: e.conn.Scopes,
				ExpiresAt: e.conn.AccessExpiresAt, Connection: e.conn}
			e.usableUntil = r.usableUntil()
		}
	}
	m.cache.put(r.key, e)
	return e
}

// randomID returns 128 random bits, base64url.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
