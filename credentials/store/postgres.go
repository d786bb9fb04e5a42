package store

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

// Defaults and limits of the PostgreSQL driver.
const (
	DefaultPoolSize       = 10
	MaxPoolSize           = 1000
	DefaultConnectTimeout = 5 * time.Second
	MinConnectTimeout     = 100 * time.Millisecond
	MaxConnectTimeout     = time.Minute
)

// PostgresSchema is the schema that holds mcpauthz's tables
// (schema_migrations, kv) and sequence (kv_version).
const PostgresSchema = "mcpauthz"

// Postgres is a Store in a PostgreSQL database (pgx connection pool), for
// any number of replicas sharing one database. Every operation is one
// statement (a failed conditional write adds one read to tell "not found"
// from "conflict"): PutIfAbsent is an INSERT ... ON CONFLICT that replaces
// only an expired row, so among concurrent callers on any replicas
// exactly one creates the record; CompareAndSwap and Delete are
// conditional on the version; versions come from a sequence, so they are
// never reused. Keys are compared byte by byte (COLLATE "C") whatever the
// database's collation. Expiry follows Options.Now (the replicas' clocks),
// as with SQLite.
//
// Migrations are versioned (embedded SQL files, recorded in
// mcpauthz.schema_migrations) and run at open in one transaction holding
// a PostgreSQL advisory lock, so replicas starting together apply each
// one once; a database migrated by a newer build is refused.
//
// The DSN holds a password: it is never kept, logged or returned in an
// error; String and LogValue name the user, host, port and database only.
// It is safe for concurrent use.
type Postgres struct {
	pool   *pgxpool.Pool
	target string
	now    func() time.Time
	log    *slog.Logger
	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

var _ Store = (*Postgres)(nil)

//go:embed migrations/postgres/*.sql
var pgMigrationFiles embed.FS

type pgMigration struct {
	version int
	name    string
	sql     string
}

// pgMigrations are the embedded migrations, NNNN_name.sql, numbered from 1
// without gaps (checked by the tests and at open).
func pgMigrations() ([]pgMigration, error) {
	names, err := fs.Glob(pgMigrationFiles, "migrations/postgres/*.sql")
	if err != nil {
		return nil, err
	}
	var out []pgMigration
	for i, n := range names { // fs.Glob returns names in lexical order
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 || len(num) != 4 || name == "" {
			return nil, fmt.Errorf("store: postgres: migration file %s: want %04d_name.sql", n, i+1)
		}
		b, err := pgMigrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, pgMigration{version: v, name: name, sql: string(b)})
	}
	return out, nil
}

// PostgresSchemaVersion is the schema version this build migrates a
// PostgreSQL database to.
func PostgresSchemaVersion() int {
	ms, _ := pgMigrations()
	return len(ms)
}

// pgMigrationLock is the advisory lock key (one per database) that
// serializes migrations across replicas.
var pgMigrationLock = func() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("mcpauthz store migrations"))
	return int64(h.Sum64())
}()

// OpenPostgres connects to the database named by dsn (a postgres:// URL or
// a key=value connection string), checks that it answers within
// opts.ConnectTimeout, and migrates it. Use Open to build it from a Config
// with its key ring. Errors never contain the DSN or its password.
func OpenPostgres(ctx context.Context, dsn secret.Value, opts Options) (*Postgres, error) {
	opts = opts.withDefaults()
	pool, target, err := newPool(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	s := &Postgres{pool: pool, target: target, now: opts.Now, log: opts.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	if _, _, err := pgMigrate(ctx, pool, opts.Logger, dsn); err != nil {
		pool.Close()
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
			s.log.Warn("store: purge expired records", "store", s, "err", err)
		} else if n > 0 {
			s.log.Debug("store: purged expired records", "store", s, "count", n)
		}
	})
	return s, nil
}

// MigratePostgres applies the missing migrations to the database named by
// dsn without opening a store (Migrate builds it from a Config).
func MigratePostgres(ctx context.Context, dsn secret.Value, opts Options) (Migration, error) {
	opts = opts.withDefaults()
	opts.PoolSize = 1
	pool, target, err := newPool(ctx, dsn, opts)
	if err != nil {
		return Migration{}, err
	}
	defer pool.Close()
	m := Migration{Driver: DriverPostgres, Database: target}
	m.From, m.To, err = pgMigrate(ctx, pool, opts.Logger, dsn)
	return m, err
}

// newPool parses dsn, applies the pool size and connect timeout, and
// checks that the database answers.
func newPool(ctx context.Context, dsn secret.Value, opts Options) (*pgxpool.Pool, string, error) {
	cfg, err := pgxpool.ParseConfig(dsn.Reveal())
	if err != nil {
		// pgx's message quotes the connection string (its password
		// redaction is best effort): say only that it does not parse,
		// or which file it could not read (sslrootcert, sslcert...).
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, "", fmt.Errorf("store: postgres: dsn: %s %s: %v", pe.Op, pe.Path, pe.Err)
		}
		return nil, "", errors.New("store: postgres: dsn: the connection string does not parse " +
			"(want postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE?sslmode=verify-full, or key=value pairs)")
	}
	cc := cfg.ConnConfig
	target := pgTarget(cc.User, cc.Host, cc.Port, cc.Database)
	cfg.MaxConns = int32(min(max(opts.PoolSize, 1), MaxPoolSize))
	cfg.MinConns = 0
	cc.ConnectTimeout = opts.ConnectTimeout
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "mcpauthz"
	}
	if !pgLocal(cc.Host) {
		switch {
		case !pgEncrypted(cc):
			opts.Logger.Warn("store: postgres: the connection to the database may be unencrypted (set sslmode=verify-full in the DSN)",
				"target", target)
		case !pgVerified(cc):
			opts.Logger.Warn("store: postgres: the database's TLS certificate is not verified (set sslmode=verify-full in the DSN)",
				"target", target)
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", pgErr(dsn, "connect to "+target, err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, "", pgErr(dsn, "connect to "+target, err)
	}
	return pool, target, nil
}

// pgErr flattens an error of the connection or migration phase into a
// message without the DSN's password. pgx's connection errors carry the
// parsed configuration, password included, so they are not wrapped; only
// a context error stays matchable with errors.Is.
func pgErr(dsn secret.Value, op string, err error) error {
	msg := err.Error()
	if pw := pgPassword(dsn); pw != "" {
		msg = strings.ReplaceAll(msg, pw, secret.Redacted)
	}
	e := &pgFlatError{msg: "store: postgres: " + op + ": " + msg}
	switch {
	case errors.Is(err, context.Canceled):
		e.cause = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		e.cause = context.DeadlineExceeded
	}
	return e
}

type pgFlatError struct {
	msg   string
	cause error
}

func (e *pgFlatError) Error() string { return e.msg }
func (e *pgFlatError) Unwrap() error { return e.cause }

func pgPassword(dsn secret.Value) string {
	cfg, err := pgconn.ParseConfig(dsn.Reveal())
	if err != nil {
		return ""
	}
	return cfg.Password
}

// pgTarget describes a database without its password.
func pgTarget(user, host string, port uint16, db string) string {
	p := strconv.Itoa(int(port))
	if strings.HasPrefix(host, "/") { // unix socket directory
		return "postgres://" + user + "@" + host + ":" + p + "/" + db
	}
	return "postgres://" + user + "@" + net.JoinHostPort(host, p) + "/" + db
}

// pgEncrypted reports whether every connection attempt uses TLS.
func pgEncrypted(cc *pgx.ConnConfig) bool {
	if cc.TLSConfig == nil {
		return false
	}
	for _, f := range cc.Fallbacks {
		if f.TLSConfig == nil {
			return false
		}
	}
	return true
}

// pgVerified reports whether TLS verifies the server's certificate
// (sslmode verify-ca or verify-full). Call it when pgEncrypted.
func pgVerified(cc *pgx.ConnConfig) bool {
	for _, t := range append([]*tls.Config{cc.TLSConfig}, pgFallbackTLS(cc)...) {
		if t.InsecureSkipVerify && t.VerifyPeerCertificate == nil {
			return false
		}
	}
	return true
}

func pgFallbackTLS(cc *pgx.ConnConfig) []*tls.Config {
	var out []*tls.Config
	for _, f := range cc.Fallbacks {
		out = append(out, f.TLSConfig)
	}
	return out
}

// pgLocal reports a unix socket or loopback host.
func pgLocal(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pgMigrate applies the missing migrations in one transaction holding the
// migration advisory lock.
func pgMigrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, dsn secret.Value) (from, to int, err error) {
	ms, err := pgMigrations()
	if err != nil {
		return 0, 0, err
	}
	fail := func(what string, err error) (int, int, error) {
		return 0, 0, pgErr(dsn, "migrate: "+what, err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fail("begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrationLock); err != nil {
		return fail("lock", err)
	}
	// CREATE SCHEMA IF NOT EXISTS would need the CREATE privilege on the
	// database even when the schema exists (created by an administrator).
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, PostgresSchema).Scan(&exists); err != nil {
		return fail("schema", err)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+PostgresSchema); err != nil {
			return fail("create schema "+PostgresSchema, err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+PostgresSchema+`.schema_migrations (
		version    integer     NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fail("schema_migrations", err)
	}
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+PostgresSchema+`.schema_migrations`).Scan(&from); err != nil {
		return fail("schema_migrations", err)
	}
	if from > len(ms) {
		return 0, 0, fmt.Errorf("store: postgres: database schema version %d is newer than this build supports (%d): upgrade mcpauthz", from, len(ms))
	}
	for _, m := range ms[from:] {
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fail(fmt.Sprintf("migration %d (%s)", m.version, m.name), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+PostgresSchema+`.schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fail(fmt.Sprintf("migration %d (%s)", m.version, m.name), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fail("commit", err)
	}
	for _, m := range ms[from:] {
		log.Info("store: postgres migration applied", "version", m.version, "name", m.name)
	}
	return from, len(ms), nil
}

// String names the database (user, host, port, database; never the
// password).
func (s *Postgres) String() string { return s.target }

// GoString is String, so %#v prints no pool internals.
func (s *Postgres) GoString() string { return s.target }

// LogValue is String.
func (s *Postgres) LogValue() slog.Value { return slog.StringValue(s.target) }

func (s *Postgres) check(ctx context.Context) error { return checkOpen(ctx, s.closed.Load()) }

// pgExpiry encodes an expiry: NULL for never.
func pgExpiry(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// pgValue keeps an empty value non-NULL.
func pgValue(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const (
	pgGet = `SELECT value, version FROM mcpauthz.kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)`

	// The row is replaced only when it has expired; the unique index
	// arbitrates concurrent inserts, so exactly one caller gets a row
	// back. nextval runs even when nothing is written: versions have
	// gaps, never repeats.
	pgPut = `INSERT INTO mcpauthz.kv AS k (key, value, version, expires_at)
		VALUES ($1, $2, nextval('mcpauthz.kv_version'), $3)
		ON CONFLICT (key) DO UPDATE
			SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
			WHERE k.expires_at IS NOT NULL AND k.expires_at <= $4
		RETURNING version`

	pgCAS = `UPDATE mcpauthz.kv SET value = $1, version = nextval('mcpauthz.kv_version'), expires_at = $2
		WHERE key = $3 AND version = $4 AND (expires_at IS NULL OR expires_at > $5)
		RETURNING version`

	pgDelete = `DELETE FROM mcpauthz.kv
		WHERE key = $1 AND ($2::bigint = 0 OR version = $2) AND (expires_at IS NULL OR expires_at > $3)`

	pgExists = `SELECT EXISTS (SELECT 1 FROM mcpauthz.kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2))`

	// One lower bound (key >= prefix, or key > after when after is past
	// the prefix) and one upper bound (every key starting with prefix
	// sorts below prefix||0x7f, keys being visible ASCII), so the primary
	// key index is scanned from the page start. The column's collation is
	// "C": byte order.
	pgListFrom  = `SELECT key, value, version, expires_at FROM mcpauthz.kv WHERE key >= $1 AND key < $2 AND (expires_at IS NULL OR expires_at > $3) ORDER BY key LIMIT $4`
	pgListAfter = `SELECT key, value, version, expires_at FROM mcpauthz.kv WHERE key > $1 AND key < $2 AND (expires_at IS NULL OR expires_at > $3) ORDER BY key LIMIT $4`

	// Purged in batches; SKIP LOCKED keeps replicas purging together (and
	// writers) from waiting on each other.
	pgPurge = `DELETE FROM mcpauthz.kv WHERE key IN (
		SELECT key FROM mcpauthz.kv WHERE expires_at IS NOT NULL AND expires_at <= $1
		LIMIT 1000 FOR UPDATE SKIP LOCKED)`
)

// Get implements Store.
func (s *Postgres) Get(ctx context.Context, key string) ([]byte, Version, error) {
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
	err := s.pool.QueryRow(ctx, pgGet, key, s.now()).Scan(&val, &v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, 0, ErrNotFound
	case err != nil:
		return nil, 0, fmt.Errorf("store: postgres: get: %w", err)
	}
	return pgValue(val), Version(v), nil
}

// PutIfAbsent implements Store. An expired record under key is replaced.
func (s *Postgres) PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (Version, bool, error) {
	if err := checkWrite(key, value, ttl); err != nil {
		return 0, false, err
	}
	if err := s.check(ctx); err != nil {
		return 0, false, err
	}
	now := s.now()
	var v int64
	err := s.pool.QueryRow(ctx, pgPut, key, pgValue(value), pgExpiry(expiry(now, ttl)), now).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("store: postgres: put: %w", err)
	}
	return Version(v), true, nil
}

// CompareAndSwap implements Store.
func (s *Postgres) CompareAndSwap(ctx context.Context, key string, old Version, value []byte, ttl time.Duration) (Version, error) {
	if err := checkWrite(key, value, ttl); err != nil {
		return 0, err
	}
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	now := s.now()
	var v int64
	err := s.pool.QueryRow(ctx, pgCAS, pgValue(value), pgExpiry(expiry(now, ttl)), key, int64(old), now).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, s.missing(ctx, "compare and swap", key, now)
	case err != nil:
		return 0, fmt.Errorf("store: postgres: compare and swap: %w", err)
	}
	return Version(v), nil
}

// Delete implements Store.
func (s *Postgres) Delete(ctx context.Context, key string, old Version) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	now := s.now()
	tag, err := s.pool.Exec(ctx, pgDelete, key, int64(old), now)
	if err != nil {
		return fmt.Errorf("store: postgres: delete: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	return s.missing(ctx, "delete", key, now)
}

// missing explains why a conditional write matched no row: ErrNotFound
// when key has no live record, ErrConflict otherwise. The write changed
// nothing, so answering from a later read is consistent.
func (s *Postgres) missing(ctx context.Context, op, key string, now time.Time) error {
	var exists bool
	if err := s.pool.QueryRow(ctx, pgExists, key, now).Scan(&exists); err != nil {
		return fmt.Errorf("store: postgres: %s: %w", op, err)
	}
	if exists {
		return ErrConflict
	}
	return ErrNotFound
}

// List implements Store.
func (s *Postgres) List(ctx context.Context, prefix, after string, limit int) ([]Entry, error) {
	if err := checkPrefix(prefix, after, limit); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var lim any // NULL: no limit
	if limit > 0 {
		lim = int64(limit)
	}
	query, lower := pgListFrom, prefix
	if after >= prefix {
		query, lower = pgListAfter, after
	}
	rows, err := s.pool.Query(ctx, query, lower, prefix+"\x7f", s.now(), lim)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var (
			e   Entry
			v   int64
			exp *time.Time
		)
		if err := rows.Scan(&e.Key, &e.Value, &v, &exp); err != nil {
			return nil, fmt.Errorf("store: postgres: list: %w", err)
		}
		e.Value, e.Version = pgValue(e.Value), Version(v)
		if exp != nil {
			e.ExpiresAt = *exp
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: postgres: list: %w", err)
	}
	return out, nil
}

// Purge deletes expired records and returns how many. It runs by itself
// every Options.PurgeInterval on every replica; replicas purging at once
// skip each other's rows.
func (s *Postgres) Purge(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := s.check(ctx); err != nil {
			return total, err
		}
		tag, err := s.pool.Exec(ctx, pgPurge, s.now())
		if err != nil {
			return total, fmt.Errorf("store: postgres: purge: %w", err)
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}

// Close stops the purger and closes the pool (waiting for connections in
// use to be released).
func (s *Postgres) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.stop)
	<-s.done
	s.pool.Close()
	return nil
}
