package connections

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// Store layout (all keys visible ASCII):
//
//	connections/rec/<org>/<user>/<server>        record: metadata + sealed tokens
//	connections/flow/<sha256(state)>             pending connect flow (sealed, TTL)
//	connections/link/<sha256(link id)>           connect link -> key (sealed, TTL)
//	connections/linkbykey/<org>/<user>/<server>  key -> link id (sealed, TTL)
//	connections/events/<org>/<user>/<ts>-<rand>  audit event (JSON, never a token)
//
// Path parts are escaped with escapePart: "/", "%", "~" and bytes outside
// visible ASCII become %XX, and the empty string (the service-account
// "user") is "~", so every part is reversible and keys stay readable.
const (
	prefixRec       = "connections/rec/"
	prefixFlow      = "connections/flow/"
	prefixLink      = "connections/link/"
	prefixLinkByKey = "connections/linkbykey/"
	prefixEvents    = "connections/events/"
)

func escapePart(s string) string {
	if s == "" {
		return "~"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '/' || c == '%' || c == '~' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func unescapePart(s string) (string, error) {
	if s == "~" {
		return "", nil
	}
	if s == "" {
		return "", errors.New("empty key part")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("truncated escape")
		}
		c, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errors.New("bad escape")
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), nil
}

// path is the escaped <org>/<user>/<server> of k.
func (k Key) path() string {
	return escapePart(k.Org) + "/" + escapePart(k.UserKey) + "/" + escapePart(k.Server)
}

func (k Key) recKey() string { return prefixRec + k.path() }

func (k Key) check() error {
	if k.Server == "" {
		return fmt.Errorf("connections: key without a server: %w", ErrNotFound)
	}
	// Escaping at most triples a part: skip escaping when that still fits.
	if raw := len(k.Org) + len(k.UserKey) + len(k.Server); len(prefixLinkByKey)+3*raw+2 <= store.MaxKeyLen {
		return nil
	}
	if len(prefixLinkByKey)+len(k.path()) > store.MaxKeyLen {
		return fmt.Errorf("connections: organization, user key and server are too long (%d bytes escaped, at most %d)", len(k.path()), store.MaxKeyLen-len(prefixLinkByKey))
	}
	return nil
}

// parseKey reverses k.path() after prefix.
func parseKey(storeKey, prefix string) (Key, error) {
	parts := strings.Split(strings.TrimPrefix(storeKey, prefix), "/")
	if len(parts) < 3 {
		return Key{}, errors.New("connections: malformed record key")
	}
	var out [3]string
	for i := range 3 {
		s, err := unescapePart(parts[i])
		if err != nil {
			return Key{}, fmt.Errorf("connections: malformed record key: %w", err)
		}
		out[i] = s
	}
	return Key{Org: out[0], UserKey: out[1], Server: out[2]}, nil
}

// hashID names a flow or link by the SHA-256 of its secret id, so the store
// never holds the bearer value itself.
func hashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// recordVersion is the first byte of every record value.
const recordVersion = 1

// meta is a record's metadata (no secrets). Times are unix milliseconds.
type meta struct {
	Mode            string   `json:"mode"`
	Status          Status   `json:"status"`
	Reason          string   `json:"reason,omitempty"`
	LastError       string   `json:"last_error,omitempty"`
	FailCount       int      `json:"fail_count,omitempty"`
	Scopes          []string `json:"scopes,omitempty"`
	ConnectedAt     int64    `json:"connected_at,omitempty"`
	UpdatedAt       int64    `json:"updated_at,omitempty"`
	LastUsedAt      int64    `json:"last_used_at,omitempty"`
	LastRefreshedAt int64    `json:"last_refreshed_at,omitempty"`
	AccessExpiresAt int64    `json:"access_expires_at,omitempty"`
	// RefreshExpiresAt is the refresh token's end of life when the
	// provider says (refresh_token_expires_in); 0: unknown.
	RefreshExpiresAt int64 `json:"refresh_expires_at,omitempty"`
	HasRefresh       bool  `json:"has_refresh,omitempty"`
	NextAttemptAt    int64 `json:"next_attempt_at,omitempty"`
	Generation       int64 `json:"generation"`
	// Prev and PrevReason: the status before a pending flow, restored when
	// the flow fails or is abandoned at PendingUntil.
	Prev         Status `json:"prev,omitempty"`
	PrevReason   string `json:"prev_reason,omitempty"`
	PendingUntil int64  `json:"pending_until,omitempty"`
	PendingFlow  string `json:"pending_flow,omitempty"` // hash of the newest flow's state
	// Lease: a refresh in progress on some replica.
	Lease *lease `json:"lease,omitempty"`
	// TokenURL is the token endpoint that issued the tokens: they are
	// never sent to another one.
	TokenURL string `json:"token_url,omitempty"`
	// ForcedGen and ForcedAt: the generation an upstream 401 refreshed to.
	ForcedGen int64 `json:"forced_gen,omitempty"`
	ForcedAt  int64 `json:"forced_at,omitempty"`
}

// lease marks a refresh in progress: Owner is a random id per Manager,
// Until when it lapses (a replica that died mid-refresh), Resumed that the
// holder took over a lapsed lease.
type lease struct {
	Owner   string `json:"owner"`
	Until   int64  `json:"until"`
	Resumed bool   `json:"resumed,omitempty"`
}

// tokens is the sealed part of a record.
type tokens struct {
	Access    string `json:"a"`
	Refresh   string `json:"r,omitempty"`
	TokenType string `json:"t,omitempty"`
}

// record is one decoded record: metadata plus the still-sealed tokens.
type record struct {
	key     Key
	meta    meta
	sealed  []byte
	version store.Version
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// encode: 0x01 | metadata JSON | 0x00 | sealed tokens (possibly empty).
// JSON never holds a raw 0x00, so the first 0x00 ends the metadata.
func (r *record) encode() ([]byte, error) {
	mj, err := json.Marshal(&r.meta)
	if err != nil {
		return nil, fmt.Errorf("connections: encode record: %w", err)
	}
	out := make([]byte, 0, 2+len(mj)+len(r.sealed))
	out = append(out, recordVersion)
	out = append(out, mj...)
	out = append(out, 0)
	return append(out, r.sealed...), nil
}

func decodeRecord(key Key, v []byte, ver store.Version) (*record, error) {
	if len(v) < 2 || v[0] != recordVersion {
		return nil, errors.New("connections: unknown record format")
	}
	i := bytes.IndexByte(v, 0)
	if i < 0 {
		return nil, errors.New("connections: malformed record")
	}
	r := &record{key: key, version: ver}
	if err := json.Unmarshal(v[1:i], &r.meta); err != nil {
		return nil, errors.New("connections: malformed record metadata")
	}
	if i+1 < len(v) {
		r.sealed = v[i+1:]
	}
	return r, nil
}

// aad binds sealed tokens to the record key and generation: a ciphertext
// copied to another record, or an older generation restored, fails to open.
func aad(recKey string, gen int64) []byte {
	b := make([]byte, 0, len(recKey)+9)
	b = append(b, recKey...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, uint64(gen))
}

func seal(c store.Cipher, recKey string, gen int64, t tokens) ([]byte, error) {
	pt, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("connections: seal: %w", err)
	}
	defer clear(pt)
	ct, err := c.Encrypt(pt, aad(recKey, gen))
	if err != nil {
		return nil, fmt.Errorf("connections: seal: %w", err)
	}
	return ct, nil
}

func (r *record) open(c store.Cipher) (tokens, error) {
	var t tokens
	if len(r.sealed) == 0 {
		return t, errors.New("connections: record holds no tokens")
	}
	pt, err := c.Decrypt(r.sealed, aad(r.key.recKey(), r.meta.Generation))
	if err != nil {
		return t, fmt.Errorf("connections: %w: tokens of a record cannot be decrypted: %w", ErrUnavailable, err)
	}
	defer clear(pt)
	if err := json.Unmarshal(pt, &t); err != nil {
		return t, fmt.Errorf("connections: %w: malformed sealed tokens", ErrUnavailable)
	}
	return t, nil
}

// status is the record's effective status at now: a pending flow past its
// end shows the status it started from.
func (r *record) status(now time.Time) (Status, string) {
	m := &r.meta
	if m.Status == StatusPending && m.PendingUntil != 0 && now.UnixMilli() >= m.PendingUntil {
		st, _ := next(TConnectAbandoned, StatusPending, m.Prev)
		return st, m.PrevReason
	}
	return m.Status, m.Reason
}

// settle persists what status shows: a pending flow past its end returns
// the record to the status it started from, with a status_changed event
// (so the audit trail never skips a state).
func (r *record) settle(key Key, now time.Time) []Event {
	st, reason := r.status(now)
	if r.meta.Status != StatusPending || st == StatusPending {
		return nil
	}
	r.meta.Status, r.meta.Reason = st, reason
	r.meta.Prev, r.meta.PrevReason, r.meta.PendingUntil, r.meta.PendingFlow = "", "", 0, ""
	return events(EventStatusChanged, key, Actor{Kind: "system", ID: "flow_expiry"}, StatusPending, st, "connect_abandoned")
}

func (r *record) connection(now time.Time) Connection {
	m := &r.meta
	st, reason := r.status(now)
	return Connection{
		Key: r.key, Mode: m.Mode, Status: st, Reason: reason, LastError: m.LastError,
		FailCount: m.FailCount, Scopes: m.Scopes,
		ConnectedAt: fromMS(m.ConnectedAt), UpdatedAt: fromMS(m.UpdatedAt), LastUsedAt: fromMS(m.LastUsedAt),
		LastRefreshedAt: fromMS(m.LastRefreshedAt), AccessExpiresAt: fromMS(m.AccessExpiresAt),
		Generation: m.Generation,
	}
}

// leased reports whether another holder's lease is live at now.
func (r *record) leasedByOther(owner string, now time.Time) bool {
	l := r.meta.Lease
	return l != nil && l.Owner != owner && now.UnixMilli() < l.Until
}

// usableUntil is when the access token stops being handed out: its expiry
// minus a skew of a tenth of its lifetime, at most 10 s. Zero: no expiry.
func (r *record) usableUntil() time.Time {
	m := &r.meta
	if m.AccessExpiresAt == 0 {
		return time.Time{}
	}
	exp := fromMS(m.AccessExpiresAt)
	issued := max(m.LastRefreshedAt, m.ConnectedAt)
	skew := 10 * time.Second
	if issued != 0 {
		skew = min(skew, exp.Sub(fromMS(issued))/10)
	}
	return exp.Add(-max(skew, 0))
}

// refreshAt is when the background sweep refreshes the token: before expiry
// by max(refresh_before, a tenth of the lifetime), but never earlier than
// half-life.
func (r *record) refreshAt(before time.Duration) time.Time {
	m := &r.meta
	exp := fromMS(m.AccessExpiresAt)
	issued := max(m.LastRefreshedAt, m.ConnectedAt)
	margin := before
	if issued != 0 {
		life := exp.Sub(fromMS(issued))
		margin = min(max(before, life/10), life/2)
	}
	return exp.Add(-margin)
}
