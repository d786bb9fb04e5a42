package connections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// Event types.
const (
	EventConnectStarted = "connect_started"
	EventConnected      = "connected"
	EventConnectFailed  = "connect_failed"
	EventRefreshed      = "refreshed"
	EventRefreshFailed  = "refresh_failed"
	EventRevoked        = "revoked"
	EventStatusChanged  = "status_changed"
)

const (
	// MaxHistory is how many events are kept per organization and user.
	MaxHistory = 1000
	// pruneEvery: a user's history is trimmed every this many events.
	pruneEvery = 32
)

// events returns the event of type typ plus, when the status changes, a
// status_changed event.
func events(typ string, key Key, by Actor, from, to Status, reason string) []Event {
	evs := []Event{{Type: typ, Key: key, Actor: by, From: from, To: to, Reason: reason}}
	if from != to && typ != EventStatusChanged {
		evs = append(evs, Event{Type: EventStatusChanged, Key: key, Actor: by, From: from, To: to, Reason: reason})
	}
	return evs
}

func eventPrefix(org, userKey string) string {
	return prefixEvents + escapePart(org) + "/" + escapePart(userKey) + "/"
}

// emit stamps, stores (best effort), logs and passes on each event.
func (m *Manager) emit(ctx context.Context, evs []Event) {
	for _, ev := range evs {
		ev.Time = m.now().UTC()
		if ev.From == "" {
			ev.From = StatusNeedsAuthorization
		}
		m.audit(ev)
		m.log.Info("connections: "+ev.Type, "key", ev.Key, "actor", ev.Actor.Kind+":"+ev.Actor.ID,
			"from", ev.From, "to", ev.To, "reason", ev.Reason)
		b, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		prefix := eventPrefix(ev.Key.Org, ev.Key.UserKey)
		// Time, then this replica's sequence (order within one instant),
		// then randomness (replicas writing in the same instant).
		k := fmt.Sprintf("%s%020d-%012d-%s", prefix, ev.Time.UnixNano(), m.evSeq.Add(1), randomID()[:6])
		if len(k) > store.MaxKeyLen {
			continue
		}
		if _, _, err := m.store.PutIfAbsent(context.WithoutCancel(ctx), k, b, 0); err != nil {
			m.log.Warn("connections: event not stored", "type", ev.Type, "key", ev.Key, "error", err)
			continue
		}
		m.evMu.Lock()
		if len(m.evCount) > 100_000 {
			clear(m.evCount)
		}
		n := m.evCount[prefix]
		m.evCount[prefix] = n + 1
		m.evMu.Unlock()
		if n%pruneEvery == 0 {
			m.pruneEvents(context.WithoutCancel(ctx), prefix)
		}
	}
}

// pruneEvents keeps the newest MaxHistory events under prefix.
func (m *Manager) pruneEvents(ctx context.Context, prefix string) {
	var all []store.Entry
	after := ""
	for {
		page, err := m.store.List(ctx, prefix, after, 1000)
		if err != nil {
			m.log.Warn("connections: prune events", "error", err)
			return
		}
		all = append(all, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Key
	}
	for i := 0; i < len(all)-MaxHistory; i++ {
		if err := m.store.Delete(ctx, all[i].Key, all[i].Version); err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
			m.log.Warn("connections: prune events", "error", err)
			return
		}
	}
}

// History returns the stored events for an organization and user (UserKey
// "" for the organization's service-account connections), newest first, at
// most limit (0: all kept, at most MaxHistory).
func (m *Manager) History(ctx context.Context, org, userKey string, limit int) ([]Event, error) {
	var out []Event
	after := ""
	prefix := eventPrefix(org, userKey)
	for {
		page, err := m.store.List(ctx, prefix, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("connections: history: %w: %w", ErrUnavailable, err)
		}
		for _, e := range page {
			var ev Event
			if json.Unmarshal(e.Value, &ev) == nil {
				out = append(out, ev)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Key
	}
	slices.Reverse(out)
	if limit <= 0 || limit > MaxHistory {
		limit = MaxHistory
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
