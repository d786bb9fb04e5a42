package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is a Store in this process's memory: state is lost on restart and
// not shared with other replicas. It is safe for concurrent use.
type Memory struct {
	now func() time.Time

	mu     sync.RWMutex
	recs   map[string]memRecord
	seq    int64
	closed bool

	stop chan struct{}
	done chan struct{}
}

type memRecord struct {
	value   []byte
	version Version
	expires time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store. It purges expired records
// every opts.PurgeInterval until Close (negative: never; expired records
// stay invisible).
func NewMemory(opts Options) *Memory {
	opts = opts.withDefaults()
	m := &Memory{now: opts.Now, recs: map[string]memRecord{}, stop: make(chan struct{}), done: make(chan struct{})}
	if opts.PurgeInterval > 0 {
		go runPurger(opts.PurgeInterval, m.stop, m.done, func() { m.purge() })
	} else {
		close(m.done)
	}
	return m
}

// runPurger calls purge every interval until stop is closed.
func runPurger(interval time.Duration, stop <-chan struct{}, done chan<- struct{}, purge func()) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			purge()
		}
	}
}

func (m *Memory) purge() int {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, r := range m.recs {
		if !live(r.expires, now) {
			delete(m.recs, k)
			n++
		}
	}
	return n
}

func (m *Memory) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, Version, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, 0, err
	}
	r, ok := m.recs[key]
	if !ok || !live(r.expires, now) {
		return nil, 0, ErrNotFound
	}
	return slices.Clone(r.value), r.version, nil
}

// PutIfAbsent implements Store.
func (m *Memory) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (Version, bool, error) {
	if err := checkWrite(key, value, ttl); err != nil {
		return 0, false, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return 0, false, err
	}
	if r, ok := m.recs[key]; ok && live(r.expires, now) {
		return 0, false, nil
	}
	m.seq++
	v := Version(m.seq)
	m.recs[key] = memRecord{value: cloneNonNil(value), version: v, expires: expiry(now, ttl)}
	return v, true, nil
}

// CompareAndSwap implements Store.
func (m *Memory) CompareAndSwap(ctx context.Context, key string, old Version, value []byte, ttl time.Duration) (Version, error) {
	if err := checkWrite(key, value, ttl); err != nil {
		return 0, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return 0, err
	}
	r, ok := m.recs[key]
	if !ok || !live(r.expires, now) {
		return 0, ErrNotFound
	}
	if r.version != old {
		return 0, ErrConflict
	}
	m.seq++
	v := Version(m.seq)
	m.recs[key] = memRecord{value: cloneNonNil(value), version: v, expires: expiry(now, ttl)}
	return v, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, key string, old Version) error {
	if err := checkKey(key); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	r, ok := m.recs[key]
	if !ok || !live(r.expires, now) {
		return ErrNotFound
	}
	if old != 0 && r.version != old {
		return ErrConflict
	}
	delete(m.recs, key)
	return nil
}

// List implements Store.
func (m *Memory) List(ctx context.Context, prefix, after string, limit int) ([]Entry, error) {
	if err := checkPrefix(prefix, after, limit); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	var keys []string
	for k, r := range m.recs {
		if strings.HasPrefix(k, prefix) && k > after && live(r.expires, now) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]Entry, len(keys))
	for i, k := range keys {
		r := m.recs[k]
		out[i] = Entry{Key: k, Value: slices.Clone(r.value), Version: r.version, ExpiresAt: r.expires}
	}
	return out, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.recs = nil
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	return nil
}

// cloneNonNil copies b; an empty value reads back as empty, not nil.
func cloneNonNil(b []byte) []byte { return append([]byte{}, b...) }
