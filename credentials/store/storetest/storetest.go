// Package storetest is the contract every store.Store implementation must
// meet: one table of tests that each implementation's own tests run
// against a fresh store (memory, SQLite, and later PostgreSQL).
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

// T0 is where the clock of every contract test starts.
var T0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// Open makes a fresh, empty store whose expiry follows now. It registers
// its own cleanup (closing the store) with t.
type Open func(t *testing.T, now func() time.Time) store.Store

// Run runs every contract test against stores made by open.
func Run(t *testing.T, open Open) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := fakeclock.New(T0)
			tc.run(t, open(t, clock.Now), clock)
		})
	}
}

var ctx = context.Background()

var tests = []struct {
	name string
	run  func(t *testing.T, s store.Store, clock *fakeclock.Clock)
}{
	{"get missing", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		if _, _, err := s.Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
	}},
	{"put if absent", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		v1, created := mustPut(t, s, "a/1", "one", 0)
		if !created || v1 <= 0 {
			t.Fatalf("first PutIfAbsent: created %t version %d", created, v1)
		}
		v, created, err := s.PutIfAbsent(ctx, "a/1", []byte("two"), 0)
		if err != nil || created || v != 0 {
			t.Fatalf("second PutIfAbsent = %d %t %v, want 0 false nil", v, created, err)
		}
		wantGet(t, s, "a/1", "one", v1)
	}},
	{"compare and swap", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		v1, _ := mustPut(t, s, "k", "v1", 0)
		v2, err := s.CompareAndSwap(ctx, "k", v1, []byte("v2"), 0)
		if err != nil || v2 <= v1 {
			t.Fatalf("CAS = %d %v, want a version above %d", v2, err, v1)
		}
		wantGet(t, s, "k", "v2", v2)
		if _, err := s.CompareAndSwap(ctx, "k", v1, []byte("stale"), 0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CAS with a stale version = %v, want ErrConflict", err)
		}
		if _, err := s.CompareAndSwap(ctx, "k", 0, []byte("zero"), 0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CAS with version 0 = %v, want ErrConflict", err)
		}
		wantGet(t, s, "k", "v2", v2)
		if _, err := s.CompareAndSwap(ctx, "missing", v2, []byte("x"), 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CAS on a missing key = %v, want ErrNotFound", err)
		}
	}},
	{"delete", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		v1, _ := mustPut(t, s, "d", "x", 0)
		if err := s.Delete(ctx, "d", v1+1000); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Delete with a wrong version = %v, want ErrConflict", err)
		}
		if err := s.Delete(ctx, "d", v1); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := s.Delete(ctx, "d", 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Delete of a deleted key = %v, want ErrNotFound", err)
		}
		// Created again: a new, higher version, so a holder of v1 cannot
		// overwrite the new record (no ABA).
		v2, created := mustPut(t, s, "d", "y", 0)
		if !created || v2 <= v1 {
			t.Fatalf("re-create: created %t version %d (old %d)", created, v2, v1)
		}
		if _, err := s.CompareAndSwap(ctx, "d", v1, []byte("old holder"), 0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("CAS with the deleted record's version = %v, want ErrConflict", err)
		}
		if err := s.Delete(ctx, "d", 0); err != nil {
			t.Fatalf("Delete any version: %v", err)
		}
		if _, _, err := s.Get(ctx, "d"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Delete = %v", err)
		}
	}},
	{"versions increase store-wide", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		var last store.Version
		for i := range 5 {
			v, _ := mustPut(t, s, "seq/"+strconv.Itoa(i), "x", 0)
			if v <= last {
				t.Fatalf("version %d after %d", v, last)
			}
			last = v
		}
	}},
	{"expiry", func(t *testing.T, s store.Store, clock *fakeclock.Clock) {
		v1, _ := mustPut(t, s, "ttl/a", "a", time.Minute)
		mustPut(t, s, "ttl/forever", "f", 0)
		clock.Advance(59 * time.Second)
		wantGet(t, s, "ttl/a", "a", v1)
		es := mustList(t, s, "ttl/", "", 0)
		if len(es) != 2 || !es[0].ExpiresAt.Equal(T0.Add(time.Minute)) || !es[1].ExpiresAt.IsZero() {
			t.Fatalf("List before expiry = %+v", es)
		}
		// CAS sets a new ttl from now.
		v2, err := s.CompareAndSwap(ctx, "ttl/a", v1, []byte("a2"), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(59 * time.Second)
		wantGet(t, s, "ttl/a", "a2", v2)
		clock.Advance(2 * time.Second)
		if _, _, err := s.Get(ctx, "ttl/a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after expiry = %v, want ErrNotFound", err)
		}
		if _, err := s.CompareAndSwap(ctx, "ttl/a", v2, []byte("late"), 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CAS after expiry = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "ttl/a", 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Delete after expiry = %v, want ErrNotFound", err)
		}
		if es := mustList(t, s, "ttl/", "", 0); len(es) != 1 || es[0].Key != "ttl/forever" {
			t.Fatalf("List after expiry = %+v", es)
		}
		// An expired record is absent: PutIfAbsent creates anew.
		v3, created := mustPut(t, s, "ttl/a", "new", 0)
		if !created || v3 <= v2 {
			t.Fatalf("PutIfAbsent over an expired record: created %t version %d", created, v3)
		}
		wantGet(t, s, "ttl/a", "new", v3)
		clock.Advance(1000 * time.Hour)
		wantGet(t, s, "ttl/a", "new", v3)
	}},
	{"list", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		for _, k := range []string{"b/2", "a0", "b/1", "b/3", "b", "b/1/x", "c/1"} {
			mustPut(t, s, k, "v:"+k, 0)
		}
		if got := keys(mustList(t, s, "b/", "", 0)); got != "b/1 b/1/x b/2 b/3" {
			t.Errorf("List b/ = %s", got)
		}
		if got := keys(mustList(t, s, "", "", 0)); got != "a0 b b/1 b/1/x b/2 b/3 c/1" {
			t.Errorf("List all = %s", got)
		}
		if got := keys(mustList(t, s, "a", "", 0)); got != "a0" {
			t.Errorf("List a = %s", got)
		}
		// Paging.
		var pages []string
		after := ""
		for {
			es := mustList(t, s, "b/", after, 2)
			if len(es) == 0 {
				break
			}
			pages = append(pages, keys(es))
			after = es[len(es)-1].Key
		}
		if got := strings.Join(pages, " | "); got != "b/1 b/1/x | b/2 b/3" {
			t.Errorf("pages = %s", got)
		}
		es := mustList(t, s, "c/", "", 0)
		if len(es) != 1 || string(es[0].Value) != "v:c/1" || es[0].Version <= 0 {
			t.Errorf("List c/ = %+v", es)
		}
		if es := mustList(t, s, "zzz", "", 0); len(es) != 0 {
			t.Errorf("List of an absent prefix = %+v", es)
		}
	}},
	{"values are copied", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		in := []byte("orig")
		if _, _, err := s.PutIfAbsent(ctx, "copy", in, 0); err != nil {
			t.Fatal(err)
		}
		in[0] = 'X'
		out, v, err := s.Get(ctx, "copy")
		if err != nil || string(out) != "orig" {
			t.Fatalf("Get = %q %v after the caller changed its slice", out, err)
		}
		out[0] = 'Y'
		wantGet(t, s, "copy", "orig", v)
		es := mustList(t, s, "copy", "", 0)
		es[0].Value[0] = 'Z'
		wantGet(t, s, "copy", "orig", v)
	}},
	{"binary and empty values", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		bin := []byte{0, 1, 0xff, 0, '\n', 0x80}
		v, _, err := s.PutIfAbsent(ctx, "bin", bin, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _, _ := s.Get(ctx, "bin")
		if !bytes.Equal(got, bin) {
			t.Fatalf("binary value = %x", got)
		}
		if _, err := s.CompareAndSwap(ctx, "bin", v, nil, 0); err != nil {
			t.Fatal(err)
		}
		got, _, err = s.Get(ctx, "bin")
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("empty value = %#v %v, want non-nil empty", got, err)
		}
	}},
	{"invalid arguments", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		for _, k := range []string{"", "has space", "tab\t", "ünï", "nul\x00", strings.Repeat("k", store.MaxKeyLen+1)} {
			if _, _, err := s.Get(ctx, k); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Get(%q) = %v, want ErrInvalid", k, err)
			}
			if _, _, err := s.PutIfAbsent(ctx, k, []byte("v"), 0); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("PutIfAbsent(%q) = %v, want ErrInvalid", k, err)
			}
			if err := s.Delete(ctx, k, 0); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("Delete(%q) = %v, want ErrInvalid", k, err)
			}
			if k != "" {
				if _, err := s.List(ctx, k, "", 0); !errors.Is(err, store.ErrInvalid) {
					t.Errorf("List(%q) = %v, want ErrInvalid", k, err)
				}
			}
		}
		if _, _, err := s.PutIfAbsent(ctx, "big", make([]byte, store.MaxValueLen+1), 0); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("oversized value: %v", err)
		}
		if _, _, err := s.PutIfAbsent(ctx, "neg", []byte("v"), -time.Second); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("negative ttl: %v", err)
		}
		if _, err := s.List(ctx, "", "", -1); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("negative limit: %v", err)
		}
		if es := mustList(t, s, "", "", 0); len(es) != 0 {
			t.Errorf("invalid writes stored something: %+v", es)
		}
		// The largest value fits.
		if _, _, err := s.PutIfAbsent(ctx, "max", make([]byte, store.MaxValueLen), 0); err != nil {
			t.Errorf("value of MaxValueLen: %v", err)
		}
	}},
	{"concurrent put if absent: exactly one wins", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		const n = 32
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []int
		)
		start := make(chan struct{})
		for g := range n {
			wg.Go(func() {
				<-start
				_, created, err := s.PutIfAbsent(ctx, "race", []byte(strconv.Itoa(g)), 0)
				if err != nil {
					t.Error(err)
					return
				}
				if created {
					mu.Lock()
					winners = append(winners, g)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("%d callers created the record, want exactly 1: %v", len(winners), winners)
		}
		got, _, err := s.Get(ctx, "race")
		if err != nil || string(got) != strconv.Itoa(winners[0]) {
			t.Fatalf("stored %q %v, want the winner's %d", got, err, winners[0])
		}
	}},
	{"concurrent compare and swap loses no update", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		mustPut(t, s, "counter", "0", 0)
		const workers, each = 8, 15
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range each {
					for {
						b, v, err := s.Get(ctx, "counter")
						if err != nil {
							t.Error(err)
							return
						}
						n, _ := strconv.Atoi(string(b))
						_, err = s.CompareAndSwap(ctx, "counter", v, []byte(strconv.Itoa(n+1)), 0)
						if err == nil {
							break
						}
						if !errors.Is(err, store.ErrConflict) {
							t.Error(err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		got, _, _ := s.Get(ctx, "counter")
		if string(got) != strconv.Itoa(workers*each) {
			t.Fatalf("counter = %s, want %d", got, workers*each)
		}
	}},
	{"cancelled context", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := s.PutIfAbsent(c, "x", []byte("v"), 0); !errors.Is(err, context.Canceled) {
			t.Errorf("PutIfAbsent = %v, want context.Canceled", err)
		}
		if _, _, err := s.Get(c, "x"); !errors.Is(err, context.Canceled) {
			t.Errorf("Get = %v, want context.Canceled", err)
		}
		if _, _, err := s.Get(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a cancelled write was stored: %v", err)
		}
	}},
	{"closed", func(t *testing.T, s store.Store, _ *fakeclock.Clock) {
		mustPut(t, s, "x", "v", 0)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, _, err := s.Get(ctx, "x"); !errors.Is(err, store.ErrClosed) {
			t.Errorf("Get after Close = %v", err)
		}
		if _, _, err := s.PutIfAbsent(ctx, "y", []byte("v"), 0); !errors.Is(err, store.ErrClosed) {
			t.Errorf("PutIfAbsent after Close = %v", err)
		}
		if _, err := s.List(ctx, "", "", 0); !errors.Is(err, store.ErrClosed) {
			t.Errorf("List after Close = %v", err)
		}
	}},
}

func mustPut(t *testing.T, s store.Store, key, value string, ttl time.Duration) (store.Version, bool) {
	t.Helper()
	v, created, err := s.PutIfAbsent(ctx, key, []byte(value), ttl)
	if err != nil {
		t.Fatalf("PutIfAbsent(%s): %v", key, err)
	}
	return v, created
}

func wantGet(t *testing.T, s store.Store, key, value string, v store.Version) {
	t.Helper()
	got, gv, err := s.Get(ctx, key)
	if err != nil || string(got) != value || gv != v {
		t.Fatalf("Get(%s) = %q version %d err %v, want %q version %d", key, got, gv, err, value, v)
	}
}

func mustList(t *testing.T, s store.Store, prefix, after string, limit int) []store.Entry {
	t.Helper()
	es, err := s.List(ctx, prefix, after, limit)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return es
}

func keys(es []store.Entry) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, e.Key)
	}
	return b.String()
}
