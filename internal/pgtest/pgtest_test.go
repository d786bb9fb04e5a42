package pgtest_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauthz/mcpauthz/internal/pgtest"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// TestServer: a throwaway server starts, gives isolated databases with a
// linguistic default collation, wants the password, runs unprivileged,
// and is gone (process and directory) after the test.
func TestServer(t *testing.T) {
	ctx := context.Background()
	var dataDir, dsn string
	t.Run("running", func(t *testing.T) {
		s := pgtest.Start(t)
		dsn = s.DSN()
		if s.Password() == "" || !strings.Contains(dsn, s.Password()) {
			t.Fatal("the superuser has no password in the DSN")
		}
		c := connect(t, s.DSN())
		if err := c.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&dataDir); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dataDir)
		if err != nil {
			t.Fatal(err)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Errorf("the data directory belongs to root")
		}

		a, b := s.NewDatabase(t), s.NewDatabase(t)
		if a == b {
			t.Fatal("NewDatabase returned the same database twice")
		}
		ca, cb := connect(t, a), connect(t, b)
		if _, err := ca.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := cb.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("a table of database a is in database b: %d %v", n, err)
		}
		if s.ICU() {
			var order string
			if err := cb.QueryRow(ctx, `SELECT string_agg(k, ' ' ORDER BY k) FROM unnest(ARRAY['B', 'a', 'b', 'A']) k`).Scan(&order); err != nil {
				t.Fatal(err)
			}
			if order != "a A b B" {
				t.Errorf("default collation order %q, want the linguistic a A b B", order)
			}
		} else {
			t.Log("the server has no ICU: databases keep the template's collation")
		}

		u, _ := url.Parse(a)
		u.User = url.User("postgres")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(cctx, u.String()); err == nil {
			_ = c.Close(ctx)
			t.Error("connected over TCP without the password")
		}

		// The same server through MCPAUTHZ_TEST_POSTGRES.
		t.Setenv(pgtest.EnvDSN, s.DSN())
		ext := pgtest.Start(t)
		if ext.ICU() != s.ICU() || ext.Password() != s.Password() {
			t.Errorf("external server: icu %t password set %t", ext.ICU(), ext.Password() != "")
		}
		connect(t, ext.NewDatabase(t))
	})
	if dataDir == "" {
		return // skipped
	}
	if _, err := os.Stat(filepath.Dir(dataDir)); !os.IsNotExist(err) {
		t.Errorf("the server's directory is still there: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(cctx, dsn); err == nil {
		_ = c.Close(ctx)
		t.Error("the server still accepts connections after the test")
	}
}

func TestBinaries(t *testing.T) {
	dir, err := pgtest.Binaries()
	if err != nil {
		if !strings.Contains(err.Error(), "apt-get install -y postgresql") {
			t.Errorf("the error does not say how to install PostgreSQL: %v", err)
		}
		t.Skipf("%v", err)
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}
