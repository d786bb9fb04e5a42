package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// sharedSessions is the sessionStore replicas share: bindings live in the
// configured state store (credentials/store: SQLite on one host today,
// PostgreSQL for many), so a session bound on one replica is refused to
// another principal on every replica.
//
// Records: sessions/b/<sha256(key)> = sha256(owner)|expiry with the session TTL
// (refreshed when half of it is left), and an owner index
// sessions/o/<sha256(owner)>/<sha256(key)> counting the owner's live
// sessions against its quota. Neither holds a session id or a principal in
// clear. Safe for concurrent use across goroutines and processes.
type sharedSessions struct {
	st        store.Store
	ttl       time.Duration
	perOwner  int
	anonymous int
}

var _ sessionStore = (*sharedSessions)(nil)

func newSharedSessions(st store.Store, ttl time.Duration, perOwner, anonymous int) *sharedSessions {
	return &sharedSessions{st: st, ttl: ttl, perOwner: perOwner, anonymous: anonymous}
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Bind implements sessionStore.
func (t *sharedSessions) Bind(ctx context.Context, key string, o sessionOwner, now time.Time) error {
	kh, oh := hashHex(key), hashHex(o.key)
	bkey := "sessions/b/" + kh
	for attempt := 0; attempt < 3; attempt++ {
		v, ver, err := t.st.Get(ctx, bkey)
		switch {
		case err == nil:
			owner, exp, _ := strings.Cut(string(v), "|")
			if owner != oh {
				return errSessionOwned
			}
			if until, perr := strconv.ParseInt(exp, 10, 64); perr == nil && time.Unix(until, 0).Sub(now) < t.ttl/2 {
				t.touch(ctx, bkey, ver, oh, kh, now)
			}
			return nil
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("server: session store: %w", err)
		}
		limit := t.perOwner
		if o.anonymous {
			limit = t.anonymous
		}
		live, err := t.st.List(ctx, "sessions/o/"+oh+"/", "", limit)
		if err != nil {
			return fmt.Errorf("server: session store: %w", err)
		}
		if len(live) >= limit {
			return errSessionQuota
		}
		if _, created, err := t.st.PutIfAbsent(ctx, bkey, t.value(oh, now), t.ttl); err != nil {
			return fmt.Errorf("server: session store: %w", err)
		} else if !created {
			continue // another replica bound it first: read the winner
		}
		if _, _, err := t.st.PutIfAbsent(ctx, "sessions/o/"+oh+"/"+kh, nil, t.ttl); err != nil {
			return fmt.Errorf("server: session store: %w", err)
		}
		return nil
	}
	return fmt.Errorf("server: session store: binding contended")
}

// value is the binding record: the owner's hash and when the binding
// expires (so a read knows when to slide it without another query).
func (t *sharedSessions) value(oh string, now time.Time) []byte {
	return []byte(oh + "|" + strconv.FormatInt(now.Add(t.ttl).Unix(), 10))
}

// touch slides the binding's expiry (and its owner-index entry). A failed
// or lost refresh leaves a live binding live; the next request retries.
func (t *sharedSessions) touch(ctx context.Context, bkey string, ver store.Version, oh, kh string, now time.Time) {
	if _, err := t.st.CompareAndSwap(ctx, bkey, ver, t.value(oh, now), t.ttl); err != nil {
		return
	}
	ikey := "sessions/o/" + oh + "/" + kh
	if _, iver, err := t.st.Get(ctx, ikey); err == nil {
		_, _ = t.st.CompareAndSwap(ctx, ikey, iver, nil, t.ttl)
	}
}
