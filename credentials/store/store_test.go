package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/credentials/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		s := store.NewMemory(store.Options{Now: now})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestSQLiteContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.Options{Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestSQLiteTwoHandles: two handles on one file (as two replicas on one
// machine) see each other's writes and race fairly.
func TestSQLiteTwoHandles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "shared.db")
	a, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	va, created, err := a.PutIfAbsent(ctx, "k", []byte("from a"), 0)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if _, created, _ := b.PutIfAbsent(ctx, "k", []byte("from b"), 0); created {
		t.Fatal("b created a record a already holds")
	}
	got, vb, err := b.Get(ctx, "k")
	if err != nil || string(got) != "from a" || vb != va {
		t.Fatalf("b reads %q v%d %v", got, vb, err)
	}
	if _, err := b.CompareAndSwap(ctx, "k", vb, []byte("b won"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CompareAndSwap(ctx, "k", va, []byte("a stale"), 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a's stale CAS = %v, want ErrConflict", err)
	}
}

// TestSQLiteProcesses: several OS processes increment one counter with
// compare-and-swap and race to create one record: no update is lost and
// exactly one process creates the record.
func TestSQLiteProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := filepath.Join(t.TempDir(), "procs.db")
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.PutIfAbsent(ctx, "counter", []byte("0"), 0); err != nil {
		t.Fatal(err)
	}
	const procs, each = 3, 25
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*strings.Builder, procs)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "STORE_HELPER_DB="+path, "STORE_HELPER_N="+strconv.Itoa(each), "STORE_HELPER_ID="+strconv.Itoa(i))
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	winners := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i])
		}
		if strings.Contains(outs[i].String(), "CREATED race") {
			winners++
		}
	}
	got, _, err := s.Get(ctx, "counter")
	if err != nil || string(got) != strconv.Itoa(procs*each) {
		t.Fatalf("counter = %s %v, want %d", got, err, procs*each)
	}
	if winners != 1 {
		t.Fatalf("%d processes created the record, want 1", winners)
	}
}

// TestSQLiteHelperProcess is one process of TestSQLiteProcesses.
func TestSQLiteHelperProcess(t *testing.T) {
	path := os.Getenv("STORE_HELPER_DB")
	if path == "" {
		t.Skip("helper process for TestSQLiteProcesses")
	}
	n, _ := strconv.Atoi(os.Getenv("STORE_HELPER_N"))
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, created, err := s.PutIfAbsent(ctx, "race", []byte(os.Getenv("STORE_HELPER_ID")), 0)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		fmt.Println("CREATED race")
	}
	for range n {
		for {
			b, v, err := s.Get(ctx, "counter")
			if err != nil {
				t.Fatal(err)
			}
			c, _ := strconv.Atoi(string(b))
			if _, err = s.CompareAndSwap(ctx, "counter", v, []byte(strconv.Itoa(c+1)), 0); err == nil {
				break
			} else if !errors.Is(err, store.ErrConflict) {
				t.Fatal(err)
			}
		}
	}
}

func TestSQLiteMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutIfAbsent(ctx, "keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database file mode %v, want 0600", st.Mode().Perm())
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, max int
	var mode string
	if err := db.QueryRow(`SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != store.SchemaVersion() || max != store.SchemaVersion() {
		t.Fatalf("schema_migrations: %d rows, max %d; want %d", n, max, store.SchemaVersion())
	}
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q %v", mode, err)
	}

	// Reopening applies nothing twice and keeps the data.
	s, err = store.OpenSQLite(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.Get(ctx, "keep"); err != nil || string(v) != "v" {
		t.Fatalf("after reopen: %q %v", v, err)
	}
	s.Close()
	if err := db.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != store.SchemaVersion() {
		t.Fatalf("after reopen: %d migrations %v", n, err)
	}

	// A database migrated by a newer build is refused.
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)`, store.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenSQLite(ctx, path, store.Options{}); err == nil || !strings.Contains(err.Error(), "newer than this build supports") {
		t.Fatalf("newer schema: %v", err)
	}

	// A missing directory is a clear error.
	if _, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "no", "such", "dir.db"), store.Options{}); err == nil || !strings.HasPrefix(err.Error(), "store: sqlite: ") {
		t.Fatalf("missing directory: %v", err)
	}
}

func TestSQLitePurge(t *testing.T) {
	ctx := context.Background()
	now := storetest.T0
	clock := func() time.Time { return now }
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "p.db"), store.Options{Now: clock, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 5 {
		if _, _, err := s.PutIfAbsent(ctx, "short/"+strconv.Itoa(i), []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.PutIfAbsent(ctx, "long", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("early purge removed %d %v", n, err)
	}
	now = now.Add(2 * time.Minute)
	if n, err := s.Purge(ctx); err != nil || n != 5 {
		t.Fatalf("purge removed %d %v, want 5", n, err)
	}
	if _, _, err := s.Get(ctx, "long"); err != nil {
		t.Fatal(err)
	}
}
