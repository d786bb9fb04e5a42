package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver, registered as "sqlite"
)

// SQLite is a Store in an embedded SQLite database file (the pure-Go
// modernc.org/sqlite driver). Several processes may open the same file:
// the database runs in WAL mode (readers never block the writer), every
// write is one IMMEDIATE transaction that waits up to the busy timeout for
// another process's write lock, and synchronous=FULL makes a committed
// write survive a crash or power loss. Migrations are versioned and run at
// open inside a write transaction, so processes starting together apply
// each one once. It is safe for concurrent use.
type SQLite struct {
	db     *sql.DB
	now    func() time.Time
	log    *slog.Logger
	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

var _ Store = (*SQLite)(nil)

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Append only: never edit a released migration.
var migrations = []struct {
	name string
	stmt []string
}{
	{"kv", []string{
		`CREATE TABLE kv (
			key        TEXT    NOT NULL PRIMARY KEY,
			value      BLOB    NOT NULL,
			version    INTEGER NOT NULL,
			expires_at INTEGER           -- unix milliseconds; NULL: never
		) WITHOUT ROWID`,
		`CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL`,
		// One row: the last version handed out, store-wide.
		`CREATE TABLE kv_seq (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL)`,
		`INSERT INTO kv_seq (id, seq) VALUES (1, 0)`,
	}},
}

// SchemaVersion is the schema version this build migrates to.
func SchemaVersion() int { return len(migrations) }

// OpenSQLite opens (creating if needed, mode 0600) the database at path and
// migrates it. Use Open to build it from a Config with its key ring.
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	opts = opts.withDefaults()
	if path == "" {
		return nil, errors.New("store: sqlite: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: path: %w", err)
	}
	// Create the file ourselves so it is private to the owner; SQLite gives
	// its -wal and -shm files the same mode.
	if f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		_ = f.Close()
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("store: sqlite: create %s: %w", abs, err)
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_txlock", "immediate")
	dsn := (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: open: %w", err)
	}
	// A few connections: reads run in parallel (WAL), writes queue here
	// rather than spinning on SQLite's busy handler.
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	s := &SQLite{db: db, now: opts.Now, log: opts.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if err := s.init(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if opts.PurgeInterval < 0 {
		close(s.done)
		return s, nil
	}
	go runPurger(opts.PurgeInterval, s.stop, s.done, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if n, err := s.Purge(ctx); err != nil {
			s.log.Warn("store: purge expired records", "err", err)
		} else if n > 0 {
			s.log.Debug("store: purged expired records", "count", n)
		}
	})
	return s, nil
}

func (s *SQLite) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("store: sqlite: open: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("store: sqlite: journal mode is %q, want wal (is the file on a filesystem without shared memory?)", mode)
	}
	return s.migrate(ctx)
}

// migrate applies the missing migrations in one write transaction.
func (s *SQLite) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("store: sqlite: database schema version %d is newer than this build supports (%d): upgrade mcpauthz", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		m := migrations[v-1]
		for _, stmt := range m.stmt {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("store: sqlite: migration %d (%s): %w", v, m.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			v, m.name, s.now().UnixMilli()); err != nil {
			return fmt.Errorf("store: sqlite: migration %d (%s): %w", v, m.name, err)
		}
		s.log.Info("store: sqlite migration applied", "version", v, "name", m.name)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	return nil
}

func (s *SQLite) check(ctx context.Context) error { return checkOpen(ctx, s.closed.Load()) }

// nullTime encodes an expiry: NULL for never.
func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// Get implements Store.
func (s *SQLite) Get(ctx context.Context, key string) ([]byte, Version, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	var (
		val []byte
		v   int64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT value, version FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)`,
		key, s.now().UnixMilli()).Scan(&val, &v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, 0, ErrNotFound
	case err != nil:
		return nil, 0, fmt.Errorf("store: sqlite: get: %w", err)
	}
	return cloneNonNil(val), Version(v), nil
}

// write runs f in one IMMEDIATE transaction with the next version; f
// reports whether it wrote (the transaction is rolled back otherwise).
func (s *SQLite) write(ctx context.Context, op string, f func(tx *sql.Tx, v Version) (bool, error)) (bool, Version, error) {
	if err := s.check(ctx); err != nil {
		return false, 0, err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, 0, fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	defer func() { _ = tx.Rollback() }()
	var seq int64
	if err := tx.QueryRowContext(ctx, `UPDATE kv_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq`).Scan(&seq); err != nil {
		return false, 0, fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	ok, err := f(tx, Version(seq))
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
			return false, 0, err
		}
		return false, 0, fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	if !ok {
		return false, 0, nil
	}
	if err := tx.Commit(); err != nil {
		return false, 0, fmt.Errorf("store: sqlite: %s: %w", op, err)
	}
	return true, Version(seq), nil
}

// PutIfAbsent implements Store. An expired record under key is replaced.
func (s *SQLite) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (Version, bool, error) {
	if err := checkWrite(key, value, ttl); err != nil {
		return 0, false, err
	}
	now := s.now()
	created, v, err := s.write(ctx, "put", func(tx *sql.Tx, v Version) (bool, error) {
		res, err := tx.ExecContext(ctx, `INSERT INTO kv (key, value, version, expires_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at
			WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= ?`,
			key, cloneNonNil(value), int64(v), nullTime(expiry(now, ttl)), now.UnixMilli())
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	})
	return v, created, err
}

// CompareAndSwap implements Store.
func (s *SQLite) CompareAndSwap(ctx context.Context, key string, old Version, value []byte, ttl time.Duration) (Version, error) {
	if err := checkWrite(key, value, ttl); err != nil {
		return 0, err
	}
	now := s.now()
	_, v, err := s.write(ctx, "compare and swap", func(tx *sql.Tx, v Version) (bool, error) {
		res, err := tx.ExecContext(ctx, `UPDATE kv SET value = ?, version = ?, expires_at = ?
			WHERE key = ? AND version = ? AND (expires_at IS NULL OR expires_at > ?)`,
			cloneNonNil(value), int64(v), nullTime(expiry(now, ttl)), key, int64(old), now.UnixMilli())
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return n == 1, err
		}
		return false, missing(ctx, tx, key, now)
	})
	return v, err
}

// Delete implements Store.
func (s *SQLite) Delete(ctx context.Context, key string, old Version) error {
	if err := checkKey(key); err != nil {
		return err
	}
	now := s.now()
	_, _, err := s.write(ctx, "delete", func(tx *sql.Tx, _ Version) (bool, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM kv WHERE key = ? AND (? = 0 OR version = ?) AND (expires_at IS NULL OR expires_at > ?)`,
			key, int64(old), int64(old), now.UnixMilli())
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return n == 1, err
		}
		return false, missing(ctx, tx, key, now)
	})
	return err
}

// missing explains why a conditional write matched no row: ErrNotFound
// when key has no live record, ErrConflict otherwise.
func missing(ctx context.Context, tx *sql.Tx, key string, now time.Time) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)`, key, now.UnixMilli()).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	}
	return ErrConflict
}

// List implements Store.
func (s *SQLite) List(ctx context.Context, prefix, after string, limit int) ([]Entry, error) {
	if err := checkPrefix(prefix, after, limit); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	lim := int64(-1)
	if limit > 0 {
		lim = int64(limit)
	}
	// Keys are visible ASCII, so every key starting with prefix sorts
	// below prefix+"\x7f" (BINARY collation compares bytes).
	// One lower bound only, so SQLite seeks straight to the page start
	// (two bounds made it scan from the prefix on every page: a full
	// listing was quadratic).
	query := `SELECT key, value, version, expires_at FROM kv
		WHERE key >= ? AND key < ? AND (expires_at IS NULL OR expires_at > ?)
		ORDER BY key LIMIT ?`
	lower := prefix
	if after >= prefix {
		query = strings.Replace(query, "key >= ?", "key > ?", 1)
		lower = after
	}
	rows, err := s.db.QueryContext(ctx, query, lower, prefix+"\x7f", s.now().UnixMilli(), lim)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var (
			e   Entry
			v   int64
			exp sql.NullInt64
		)
		if err := rows.Scan(&e.Key, &e.Value, &v, &exp); err != nil {
			return nil, fmt.Errorf("store: sqlite: list: %w", err)
		}
		e.Value, e.Version = cloneNonNil(e.Value), Version(v)
		if exp.Valid {
			e.ExpiresAt = time.UnixMilli(exp.Int64)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sqlite: list: %w", err)
	}
	return out, nil
}

// Purge deletes expired records and returns how many. It runs by itself
// every Options.PurgeInterval.
func (s *SQLite) Purge(ctx context.Context) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?`, s.now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: sqlite: purge: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Close stops the purger and closes the database.
func (s *SQLite) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: sqlite: close: %w", err)
	}
	return nil
}
