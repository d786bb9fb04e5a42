package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/credentials/store/storetest"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
	"github.com/mcpauthz/mcpauthz/internal/pgtest"
)

// TestPostgres runs everything that needs a server on one throwaway
// cluster (pgtest), each subtest on fresh databases.
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	t.Run("contract", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
			return openPG(t, srv.NewDatabase(t), store.Options{Now: now})
		})
	})
	t.Run("two replicas", func(t *testing.T) { testPGReplicas(t, srv) })
	t.Run("byte order", func(t *testing.T) { testPGByteOrder(t, srv) })
	t.Run("migrations", func(t *testing.T) { testPGMigrations(t, srv) })
	t.Run("schema created by an administrator", func(t *testing.T) { testPGAdminSchema(t, srv) })
	t.Run("purge", func(t *testing.T) { testPGPurge(t, srv) })
	t.Run("secrets", func(t *testing.T) { testPGSecrets(t, srv) })
	t.Run("open from config", func(t *testing.T) { testPGOpenConfig(t, srv) })
}

var bg = context.Background()

func openPG(t testing.TB, dsn string, opts store.Options) *store.Postgres {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := store.OpenPostgres(bg, secret.NewValue(dsn), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sqlConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(bg) })
	return c
}

// testPGReplicas: two stores (two replicas, two pools) on one database see
// each other's writes at once and race fairly.
func testPGReplicas(t *testing.T, srv *pgtest.Server) {
	dsn := srv.NewDatabase(t)
	clock := fakeclock.New(storetest.T0)
	a := openPG(t, dsn, store.Options{Now: clock.Now, PurgeInterval: -1})
	b := openPG(t, dsn, store.Options{Now: clock.Now, PurgeInterval: -1})
	replicas := []store.Store{a, b}

	va, created, err := a.PutIfAbsent(bg, "k", []byte("from a"), 0)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	got, vb, err := b.Get(bg, "k")
	if err != nil || string(got) != "from a" || vb != va {
		t.Fatalf("b reads %q v%d %v, want a's record v%d", got, vb, err, va)
	}
	if _, created, err := b.PutIfAbsent(bg, "k", []byte("from b"), 0); err != nil || created {
		t.Fatalf("b created a record a holds: %t %v", created, err)
	}

	// Races across the replicas: exactly one creator per key, also over
	// an expired record.
	for round := range 10 {
		key := "race/" + strconv.Itoa(round)
		if round%2 == 1 {
			if _, _, err := a.PutIfAbsent(bg, key, []byte("expired"), time.Second); err != nil {
				t.Fatal(err)
			}
		}
		clock.Advance(2 * time.Second)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []string
		)
		start := make(chan struct{})
		for g := range 16 {
			wg.Go(func() {
				<-start
				name := fmt.Sprintf("%c%d", "ab"[g%2], g)
				_, created, err := replicas[g%2].PutIfAbsent(bg, key, []byte(name), 0)
				if err != nil {
					t.Error(err)
				}
				if created {
					mu.Lock()
					winners = append(winners, name)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d creators %v, want exactly 1", round, len(winners), winners)
		}
		for _, r := range replicas {
			if got, _, err := r.Get(bg, key); err != nil || string(got) != winners[0] {
				t.Fatalf("round %d: a replica reads %q %v, want the winner's %q", round, got, err, winners[0])
			}
		}
	}

	// Compare-and-swap increments from both replicas lose nothing.
	if _, _, err := a.PutIfAbsent(bg, "counter", []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	const workers, each = 6, 15
	var wg sync.WaitGroup
	for w := range workers {
		s := replicas[w%2]
		wg.Go(func() {
			for range each {
				for {
					b, v, err := s.Get(bg, "counter")
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(b))
					if _, err = s.CompareAndSwap(bg, "counter", v, []byte(strconv.Itoa(n+1)), 0); err == nil {
						break
					} else if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if got, _, _ := b.Get(bg, "counter"); string(got) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s, want %d", got, workers*each)
	}

	// A delete on a is seen by b at once, everywhere.
	_, v, err := b.Get(bg, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(bg, "k", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(bg, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b.Get after a's Delete = %v, want ErrNotFound", err)
	}
	if _, err := b.CompareAndSwap(bg, "k", v, []byte("stale"), 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b's CAS after a's Delete = %v, want ErrNotFound", err)
	}
	if es, err := b.List(bg, "k", "", 0); err != nil || len(es) != 0 {
		t.Fatalf("b.List after a's Delete = %+v %v", es, err)
	}
	if err := b.Delete(bg, "k", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b.Delete after a's Delete = %v, want ErrNotFound", err)
	}
	v2, created, err := b.PutIfAbsent(bg, "k", []byte("again"), 0)
	if err != nil || !created || v2 <= v {
		t.Fatalf("re-create on b: v%d created %t %v (old v%d)", v2, created, err, v)
	}

	// Expiry is the same on both.
	if _, _, err := a.PutIfAbsent(bg, "ttl", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(bg, "ttl"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if _, _, err := b.Get(bg, "ttl"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b.Get of an expired record = %v", err)
	}
}

// testPGByteOrder: List follows byte order although the database's
// default collation (ICU en-US in pgtest) sorts otherwise, and it scans
// the primary key index from the page start.
func testPGByteOrder(t *testing.T, srv *pgtest.Server) {
	dsn := srv.NewDatabase(t)
	if !srv.ICU() {
		t.Log("the server has no ICU: the database collation is C, so this checks less")
	}
	s := openPG(t, dsn, store.Options{PurgeInterval: -1})
	keys := []string{"~", "b", "a~", "ab", "aB", "a_b", "a-b", "a", "B", "A", "a0", "a/"}
	for _, k := range keys {
		if _, _, err := s.PutIfAbsent(bg, k, []byte(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	want := slices.Clone(keys)
	slices.Sort(want) // byte order
	names := func(es []store.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Key)
		}
		return out
	}
	es, err := s.List(bg, "", "", 0)
	if err != nil || !slices.Equal(names(es), want) {
		t.Fatalf("List = %q %v, want byte order %q", names(es), err, want)
	}
	var paged []string
	for after := ""; ; {
		es, err := s.List(bg, "", after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		paged = append(paged, es[0].Key)
		after = es[0].Key
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("pages = %q, want %q", paged, want)
	}
	es, err = s.List(bg, "a", "", 0)
	if wantA := []string{"a", "a-b", "a/", "a0", "aB", "a_b", "ab", "a~"}; err != nil || !slices.Equal(names(es), wantA) {
		t.Fatalf("List(a) = %q %v, want %q", names(es), err, wantA)
	}
	es, err = s.List(bg, "a", "a0", 2)
	if wantA := []string{"aB", "a_b"}; err != nil || !slices.Equal(names(es), wantA) {
		t.Fatalf("List(a after a0) = %q %v, want %q", names(es), err, wantA)
	}

	// Both List queries use the primary key index with both bounds.
	c := sqlConn(t, dsn)
	if _, err := c.Exec(bg, `SET enable_seqscan = off; SET enable_bitmapscan = off`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{store.PgListFromForTest, store.PgListAfterForTest} {
		rows, err := c.Query(bg, "EXPLAIN "+q, "a", "a\x7f", time.Now(), 10)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		p := strings.Join(plan, "\n")
		if !strings.Contains(p, "Index Scan using kv_pkey") || !strings.Contains(p, "Index Cond: ((key >") || !strings.Contains(p, "(key < ") ||
			strings.Contains(p, "Sort") {
			t.Errorf("List does not range-scan the primary key:\n%s", p)
		}
	}
}

// testPGMigrations: replicas starting together migrate once; reopening
// applies nothing; a newer schema is refused.
func testPGMigrations(t *testing.T, srv *pgtest.Server) {
	if store.PostgresSchemaVersion() < 1 {
		t.Fatalf("PostgresSchemaVersion = %d: the embedded migrations do not load", store.PostgresSchemaVersion())
	}
	dsn := srv.NewDatabase(t)
	const n = 6
	results := make([]store.Migration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = store.MigratePostgres(bg, secret.NewValue(dsn), store.Options{})
		})
	}
	wg.Wait()
	fresh := 0
	for i, m := range results {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		if m.To != store.PostgresSchemaVersion() || m.Driver != store.DriverPostgres {
			t.Fatalf("replica %d: %+v", i, m)
		}
		switch m.From {
		case 0:
			fresh++
		case m.To:
		default:
			t.Fatalf("replica %d: from %d", i, m.From)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d replicas applied the migrations, want 1", fresh)
	}
	c := sqlConn(t, dsn)
	var count, max int
	if err := c.QueryRow(bg, `SELECT count(*), max(version) FROM mcpauthz.schema_migrations`).Scan(&count, &max); err != nil {
		t.Fatal(err)
	}
	if count != store.PostgresSchemaVersion() || max != store.PostgresSchemaVersion() {
		t.Fatalf("schema_migrations: %d rows, max %d; want %d", count, max, store.PostgresSchemaVersion())
	}

	s := openPG(t, dsn, store.Options{})
	if _, _, err := s.PutIfAbsent(bg, "keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = openPG(t, dsn, store.Options{})
	if v, _, err := s.Get(bg, "keep"); err != nil || string(v) != "v" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
	if err := c.QueryRow(bg, `SELECT count(*) FROM mcpauthz.schema_migrations`).Scan(&count); err != nil || count != store.PostgresSchemaVersion() {
		t.Fatalf("after reopen: %d migrations %v", count, err)
	}

	if _, err := c.Exec(bg, `INSERT INTO mcpauthz.schema_migrations (version, name) VALUES ($1, 'future')`, store.PostgresSchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenPostgres(bg, secret.NewValue(dsn), store.Options{}); err == nil || !strings.Contains(err.Error(), "newer than this build supports") {
		t.Fatalf("newer schema: %v", err)
	}
	if _, err := store.MigratePostgres(bg, secret.NewValue(dsn), store.Options{}); err == nil || !strings.Contains(err.Error(), "newer than this build supports") {
		t.Fatalf("migrate a newer schema: %v", err)
	}
}

// testPGAdminSchema: a role without CREATE on the database uses a schema
// an administrator created for it, and is told clearly when there is none.
func testPGAdminSchema(t *testing.T, srv *pgtest.Server) {
	dsn := srv.NewDatabase(t)
	admin := sqlConn(t, dsn)
	role := fmt.Sprintf("app_%d", time.Now().UnixNano()%1e9)
	pw := "app-pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := admin.Exec(bg, `CREATE ROLE `+role+` LOGIN PASSWORD '`+pw+`'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c := sqlConn(t, srv.DSN())
		_, _ = c.Exec(bg, `DROP OWNED BY `+role)
	})
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(role, pw)
	appDSN := u.String()
	_, err := store.OpenPostgres(bg, secret.NewValue(appDSN), store.Options{})
	if err == nil || !strings.Contains(err.Error(), "create schema mcpauthz") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("open without the right to create the schema: %v", err)
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatal("the error holds the password")
	}
	if _, err := admin.Exec(bg, `CREATE SCHEMA mcpauthz AUTHORIZATION `+role); err != nil {
		t.Fatal(err)
	}
	s := openPG(t, appDSN, store.Options{})
	if _, created, err := s.PutIfAbsent(bg, "x", []byte("y"), 0); err != nil || !created {
		t.Fatal(created, err)
	}
}

func testPGPurge(t *testing.T, srv *pgtest.Server) {
	dsn := srv.NewDatabase(t)
	clock := fakeclock.New(storetest.T0)
	s := openPG(t, dsn, store.Options{Now: clock.Now, PurgeInterval: -1})
	c := sqlConn(t, dsn)
	rows := func() int {
		var n int
		if err := c.QueryRow(bg, `SELECT count(*) FROM mcpauthz.kv`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 5 {
		if _, _, err := s.PutIfAbsent(bg, "short/"+strconv.Itoa(i), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.PutIfAbsent(bg, "long", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// More than one purge batch.
	if _, err := c.Exec(bg, `INSERT INTO mcpauthz.kv (key, value, version, expires_at)
		SELECT 'bulk/' || g, '\x00', nextval('mcpauthz.kv_version'), $1 FROM generate_series(1, 2500) g`, storetest.T0); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(bg); err != nil || n != 2500 {
		t.Fatalf("purge of the expired bulk removed %d %v, want 2500", n, err)
	}
	clock.Advance(2 * time.Minute)
	if n, err := s.Purge(bg); err != nil || n != 5 {
		t.Fatalf("purge removed %d %v, want 5", n, err)
	}
	if n := rows(); n != 1 {
		t.Fatalf("%d rows left, want 1", n)
	}

	// The purger runs by itself.
	p := openPG(t, dsn, store.Options{PurgeInterval: 20 * time.Millisecond})
	if _, _, err := p.PutIfAbsent(bg, "soon", []byte("x"), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	soon := func() int {
		var n int
		if err := c.QueryRow(bg, `SELECT count(*) FROM mcpauthz.kv WHERE key = 'soon'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for soon() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the periodic purge did not remove the expired record")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testPGSecrets: the DSN's password is in no error, log line or printed
// form of the store.
func testPGSecrets(t *testing.T, srv *pgtest.Server) {
	dsn := srv.NewDatabase(t)
	pw := srv.Password()
	if pw == "" {
		t.Skip("the server's DSN has no password")
	}
	u, _ := url.Parse(dsn)
	wrongPW := "Wr0ng-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	closed := func() string { // a loopback port nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}()
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tests := []struct {
		name, dsn, secret, want string
	}{
		{"wrong password", withPassword(u, wrongPW), wrongPW, "password authentication failed"},
		{"nobody listening", strings.Replace(dsn, u.Host, closed, 1), pw, "connect to postgres://postgres@" + closed},
		{"malformed URL", "postgres://postgres:" + pw + "@127.0.0.1:notaport/db", pw, "does not parse"},
		{"malformed URL with a space", "postgres://postgres:" + pw + " x@127.0.0.1/db", pw, "does not parse"},
		{"malformed key=value", "host=127.0.0.1 password=" + pw + " port=notaport", pw, "does not parse"},
		{"unknown database", strings.Replace(dsn, u.Path, "/no_such_db", 1), pw, "no_such_db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := store.OpenPostgres(bg, secret.NewValue(tc.dsn), store.Options{Logger: log, ConnectTimeout: 2 * time.Second})
			if err == nil {
				t.Fatal("opened")
			}
			for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
				if strings.Contains(s, tc.secret) {
					t.Fatalf("the error holds the password: %s", s)
				}
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "store: postgres: ") {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			if _, err := store.MigratePostgres(bg, secret.NewValue(tc.dsn), store.Options{Logger: log, ConnectTimeout: 2 * time.Second}); err == nil || strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("migrate: %v", err)
			}
		})
	}
	// Remote hosts without verified TLS are warned about (before the
	// connection fails: .invalid never resolves).
	warnings := []struct{ query, want string }{
		{"sslmode=disable", "may be unencrypted"},
		{"sslmode=prefer", "may be unencrypted"},
		{"sslmode=require", "certificate is not verified"},
		{"sslmode=verify-full", ""},
	}
	for _, w := range warnings {
		var wlogs bytes.Buffer
		wlog := slog.New(slog.NewJSONHandler(&wlogs, nil))
		_, err := store.OpenPostgres(bg, secret.NewValue("postgres://app:"+pw+"@db.mcpauthz-test.invalid:5432/state?"+w.query),
			store.Options{Logger: wlog, ConnectTimeout: time.Second})
		if err == nil || strings.Contains(err.Error()+wlogs.String(), pw) {
			t.Fatalf("%s: %v\n%s", w.query, err, wlogs.String())
		}
		if got := wlogs.String(); (w.want == "") != (got == "") || !strings.Contains(got, w.want) ||
			(got != "" && !strings.Contains(got, `"target":"postgres://app@db.mcpauthz-test.invalid:5432/state"`)) {
			t.Errorf("%s: logs %q, want a warning %q naming the target", w.query, got, w.want)
		}
	}
	if _, err := store.OpenPostgres(bg, secret.NewValue("postgres://app:"+pw+"@127.0.0.1/x?sslmode=verify-full&sslrootcert=/no/such/ca.pem"), store.Options{}); err == nil ||
		!strings.Contains(err.Error(), "/no/such/ca.pem") || strings.Contains(err.Error(), pw) {
		t.Errorf("a missing CA file: %v", err)
	}

	c, cancel := context.WithCancel(bg)
	cancel()
	if _, err := store.OpenPostgres(c, secret.NewValue(dsn), store.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("open with a cancelled context = %v, want context.Canceled", err)
	}

	s := openPG(t, dsn, store.Options{Logger: log})
	log.Info("opened", "store", s)
	printed := []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), logs.String()}
	for _, p := range printed {
		if strings.Contains(p, pw) {
			t.Fatalf("the password is printed: %s", p)
		}
	}
	if want := "postgres://postgres@" + u.Host + u.Path; fmt.Sprint(s) != want || !strings.Contains(logs.String(), `"store":"`+want+`"`) {
		t.Errorf("String = %q, want %q; logs:\n%s", s, want, logs.String())
	}
}

func withPassword(u *url.URL, pw string) string {
	c := *u
	c.User = url.UserPassword(c.User.Username(), pw)
	return c.String()
}

// testPGOpenConfig: store.Open and store.Migrate with driver postgres.
func testPGOpenConfig(t *testing.T, srv *pgtest.Server) {
	dsn := srv.NewDatabase(t)
	t.Setenv("TEST_PG_DSN", dsn)
	t.Setenv("TEST_PG_K1", randomKey(t))
	t.Setenv("TEST_PG_K2", randomKey(t))
	cfg := store.Config{
		Driver: store.DriverPostgres, DSN: secret.Ref{Env: "TEST_PG_DSN"}, PoolSize: 3, ConnectTimeout: 2 * time.Second,
		Encryption: store.Encryption{Keys: []store.KeyConfig{{ID: "k1", Secret: secret.Ref{Env: "TEST_PG_K1"}}}},
	}
	m, err := store.Migrate(bg, cfg, store.Options{})
	if err != nil || m.From != 0 || m.To != store.PostgresSchemaVersion() || strings.Contains(m.Database, srv.Password()) {
		t.Fatalf("Migrate = %+v %v", m, err)
	}
	if m, err := store.Migrate(bg, cfg, store.Options{}); err != nil || m.From != m.To {
		t.Fatalf("second Migrate = %+v %v", m, err)
	}
	var logs bytes.Buffer
	st, ring, err := store.Open(bg, cfg, store.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(*store.Postgres); !ok || ring.Primary() != "k1" {
		t.Fatalf("Open = %T, primary %q", st, ring.Primary())
	}
	if _, _, err := st.Get(bg, "store/canary"); err != nil {
		t.Fatalf("no canary: %v", err)
	}
	_ = st.Close()
	if !strings.Contains(logs.String(), `"driver":"postgres"`) || strings.Contains(logs.String(), srv.Password()) {
		t.Fatalf("open logs:\n%s", logs.String())
	}

	// A replica configured with keys that cannot read the database fails
	// at start.
	other := cfg
	other.Encryption = store.Encryption{Keys: []store.KeyConfig{{ID: "k1", Secret: secret.Ref{Env: "TEST_PG_K2"}}}}
	if _, _, err := store.Open(bg, other, store.Options{}); err == nil || !strings.Contains(err.Error(), "cannot read this database") {
		t.Fatalf("Open with the wrong key: %v", err)
	}
	// An unset DSN variable is named, not guessed.
	unset := cfg
	unset.DSN = secret.Ref{Env: "TEST_PG_DSN_UNSET"}
	if _, _, err := store.Open(bg, unset, store.Options{}); err == nil || !strings.Contains(err.Error(), "TEST_PG_DSN_UNSET") {
		t.Fatalf("Open with an unset DSN variable: %v", err)
	}
	if _, err := store.Migrate(bg, store.Config{}, store.Options{}); err == nil || !strings.Contains(err.Error(), "nothing to migrate") {
		t.Fatalf("Migrate with driver memory: %v", err)
	}
}

func randomKey(t *testing.T) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func TestMigrateSQLite(t *testing.T) {
	t.Setenv("TEST_SQLITE_K1", randomKey(t))
	cfg := store.Config{Driver: store.DriverSQLite, Path: filepath.Join(t.TempDir(), "m.db"),
		Encryption: store.Encryption{Keys: []store.KeyConfig{{ID: "k1", Secret: secret.Ref{Env: "TEST_SQLITE_K1"}}}}}
	m, err := store.Migrate(bg, cfg, store.Options{})
	if err != nil || m.To != store.SchemaVersion() || m.Database != cfg.Path {
		t.Fatalf("Migrate = %+v %v", m, err)
	}
}

func TestConfigValidatePostgres(t *testing.T) {
	keys := store.Encryption{Keys: []store.KeyConfig{{ID: "k1", Secret: secret.Ref{Env: "K1"}}}}
	dsn := secret.Ref{Env: "PG_DSN"}
	tests := []struct {
		name string
		cfg  store.Config
		want []string // substrings of the error; none: valid
	}{
		{"minimal", store.Config{Driver: "postgres", DSN: dsn, Encryption: keys}, nil},
		{"all fields", store.Config{Driver: "postgres", DSN: secret.Ref{File: "/run/secrets/pg"}, PoolSize: 50, ConnectTimeout: 3 * time.Second, Encryption: keys}, nil},
		{"no dsn", store.Config{Driver: "postgres", Encryption: keys}, []string{"dsn: required with driver postgres"}},
		{"bad dsn ref", store.Config{Driver: "postgres", DSN: secret.Ref{Env: "1bad"}, Encryption: keys}, []string{"dsn: "}},
		{"no keys", store.Config{Driver: "postgres", DSN: dsn}, []string{"encryption.keys: required with driver postgres"}},
		{"pool size", store.Config{Driver: "postgres", DSN: dsn, PoolSize: 1001, Encryption: keys}, []string{"pool_size: must be between 1 and 1000"}},
		{"negative pool size", store.Config{Driver: "postgres", DSN: dsn, PoolSize: -1, Encryption: keys}, []string{"pool_size: "}},
		{"connect timeout", store.Config{Driver: "postgres", DSN: dsn, ConnectTimeout: time.Millisecond, Encryption: keys}, []string{"connect_timeout: must be between 100ms and 1m0s"}},
		{"sqlite fields", store.Config{Driver: "postgres", DSN: dsn, Path: "/x.db", BusyTimeout: time.Second, Encryption: keys},
			[]string{"path: applies to driver sqlite only", "busy_timeout: applies to driver sqlite only"}},
		{"postgres fields on sqlite", store.Config{Driver: "sqlite", Path: "/x.db", DSN: dsn, PoolSize: 2, ConnectTimeout: time.Second, Encryption: keys},
			[]string{"dsn: applies to driver postgres only", "pool_size: applies to driver postgres only", "connect_timeout: applies to driver postgres only"}},
		{"postgres fields on memory", store.Config{DSN: dsn}, []string{"dsn: applies to driver postgres only"}},
		{"unknown driver", store.Config{Driver: "mysql"}, []string{"want memory, sqlite or postgres"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want %q", err, w)
				}
			}
		})
	}
}

// BenchmarkStore compares PostgreSQL (a local durable cluster: fsync and
// synchronous commit on) with SQLite (synchronous=FULL) in the same run:
// Get and CompareAndSwap on one record, serially and from parallel
// goroutines.
func BenchmarkStore(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Durable())
	stores := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"sqlite", func(b *testing.B) store.Store {
			s, err := store.OpenSQLite(bg, filepath.Join(b.TempDir(), "bench.db"), store.Options{PurgeInterval: -1, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"postgres", func(b *testing.B) store.Store {
			return openPG(b, srv.NewDatabase(b), store.Options{PurgeInterval: -1})
		}},
	}
	value := bytes.Repeat([]byte{0xab}, 512)
	ops := []struct {
		name string
		run  func(b *testing.B, s store.Store)
	}{
		{"Get", func(b *testing.B, s store.Store) {
			if _, _, err := s.PutIfAbsent(bg, "bench/get", value, 0); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, _, err := s.Get(bg, "bench/get"); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"GetParallel", func(b *testing.B, s store.Store) {
			if _, _, err := s.PutIfAbsent(bg, "bench/get", value, 0); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := s.Get(bg, "bench/get"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}},
		{"CompareAndSwap", func(b *testing.B, s store.Store) {
			v, _, err := s.PutIfAbsent(bg, "bench/cas", value, 0)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if v, err = s.CompareAndSwap(bg, "bench/cas", v, value, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"CompareAndSwapParallel", func(b *testing.B, s store.Store) {
			// Each goroutine its own record: write throughput, not
			// contention on one row.
			var mu sync.Mutex
			next := 0
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				key := "bench/cas/" + strconv.Itoa(next)
				next++
				mu.Unlock()
				v, _, err := s.PutIfAbsent(bg, key, value, 0)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if v, err = s.CompareAndSwap(bg, key, v, value, time.Hour); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}},
	}
	for _, op := range ops {
		for _, st := range stores {
			b.Run(op.name+"/"+st.name, func(b *testing.B) {
				s := st.open(b)
				b.ResetTimer()
				op.run(b, s)
			})
		}
	}
}
