package connections

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

// BenchmarkToken is the warm Check path of an `individual` server: the
// token comes from the in-memory cache (one sharded read lock, no I/O).
func BenchmarkToken(b *testing.B) {
	e := benchEnv(b)
	if _, err := e.m.Token(ctx, alice); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.m.Token(ctx, alice); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchEnv is a Manager with alice's connection seeded in SQLite (no
// provider: the warm path never calls it).
func benchEnv(b *testing.B) *env {
	clock := fakeclock.New(t0)
	s, err := store.OpenSQLite(ctx, filepath.Join(b.TempDir(), "state.db"), store.Options{Now: clock.Now, PurgeInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ring := newKeyRing(b, "k1", "k1")
	// The real clock: the 2 s cache entry lapses and is re-read as in production.
	m, err := New(ctx, Config{PublicURL: testPublicURL}, Options{Store: s, Cipher: ring})
	if err != nil {
		b.Fatal(err)
	}
	pc := ProviderConfig{AuthorizationURL: "https://p.example/authorize", TokenURL: "https://p.example/token", ClientID: "c", AuthStyle: AuthStyleNone}
	if err := m.Register(testServer, ModeIndividual, pc); err != nil {
		b.Fatal(err)
	}
	seed(b, s, ring, time.Now(), []Key{alice})
	return &env{m: m, sqlite: s, ring: ring, clock: clock}
}

// seed writes AUTHORIZED records with sealed tokens for keys, straight
// through the store (the shape CompleteConnect writes).
func seed(b testing.TB, s store.Store, ring store.Cipher, now time.Time, keys []Key) {
	b.Helper()
	var wg sync.WaitGroup
	ch := make(chan Key)
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for k := range ch {
				r := &record{key: k, meta: meta{Mode: ModeIndividual, Status: StatusAuthorized, Scopes: []string{"repo", "read:user"},
					ConnectedAt: ms(now), UpdatedAt: ms(now), AccessExpiresAt: ms(now.Add(8 * time.Hour)), HasRefresh: true,
					Generation: 1, TokenURL: "https://p.example/token"}}
				var err error
				r.sealed, err = seal(ring, k.recKey(), 1, tokens{Access: "gho_" + k.UserKey + "_access_0123456789abcdef", Refresh: "ghr_" + k.UserKey + "_refresh_0123456789abcdef", TokenType: "Bearer"})
				if err == nil {
					var v []byte
					if v, err = r.encode(); err == nil {
						_, _, err = s.PutIfAbsent(ctx, k.recKey(), v, 0)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, k := range keys {
		ch <- k
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// BenchmarkSweep100k: the background refresher's sweep over 100,000 stored
// connections in SQLite (none due, so this is the cost of reading every
// row once per RefreshInterval). Reports the store's share per sweep.
// Seeding writes through the store on tmpfs (/dev/shm) when present:
// 100,000 fsynced commits on a disk would take minutes and are not what is
// measured; the sweep itself only reads.
func BenchmarkSweep100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "connections-bench"); err == nil {
			dir = d
			b.Cleanup(func() { _ = os.RemoveAll(d) })
		}
	}
	clock := fakeclock.New(t0)
	s, err := store.OpenSQLite(ctx, filepath.Join(dir, "state.db"), store.Options{Now: clock.Now, PurgeInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ring := newKeyRing(b, "k1", "k1")
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{Org: fmt.Sprintf("org%03d", i%100), UserKey: fmt.Sprintf("https://idp.example.com|user-%06d", i), Server: testServer}
	}
	start := time.Now()
	seed(b, s, ring, clock.Now(), keys)
	b.Logf("seeded %d connections in %s", n, time.Since(start).Round(time.Millisecond))
	m, err := New(ctx, Config{PublicURL: testPublicURL}, Options{Store: s, Cipher: ring, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	pc := ProviderConfig{AuthorizationURL: "https://p.example/authorize", TokenURL: "https://p.example/token", ClientID: "c", AuthStyle: AuthStyleNone}
	if err := m.Register(testServer, ModeIndividual, pc); err != nil {
		b.Fatal(err)
	}
	var storeTime time.Duration
	b.ResetTimer()
	for b.Loop() {
		rep := m.sweep(context.Background())
		if rep.records != n || rep.due != 0 {
			b.Fatalf("sweep %+v", rep)
		}
		storeTime += rep.storeTime
	}
	b.ReportMetric(float64(storeTime.Milliseconds())/float64(b.N), "store-ms/sweep")
	if st := m.Stats(); st.ByServerStatus[testServer][StatusAuthorized] != n {
		b.Fatalf("stats %+v", st.ByServerStatus)
	}
}
