package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Drivers.
const (
	DriverMemory   = "memory"
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Defaults and limits for Config.
const (
	DefaultBusyTimeout   = 5 * time.Second
	MinBusyTimeout       = 100 * time.Millisecond
	MaxBusyTimeout       = time.Minute
	DefaultPurgeInterval = time.Minute
)

// Config selects and configures the store. It is the top-level `store:`
// block of the server configuration:
//
//	store:
//	  driver: sqlite                    # memory (default) | sqlite | postgres
//	  path: /var/lib/mcpauthz/state.db  # sqlite only; required
//	  busy_timeout: 5s                  # sqlite only; 100ms..1m
//	  # dsn: {env: MCPAUTHZ_POSTGRES_DSN} # postgres only; required
//	  # pool_size: 10                   # postgres only; 1..1000
//	  # connect_timeout: 5s             # postgres only; 100ms..1m
//	  encryption:
//	    keys:                           # required for sqlite and postgres
//	      - id: k2
//	        secret: {file: /run/secrets/mcpauthz-store-k2}  # base64 of 32 random bytes
//	      - id: k1
//	        secret: {env: MCPAUTHZ_STORE_K1}
//	    primary: k2                     # default: the first key
type Config struct {
	// Driver is "memory" (default: state lives in this process only, so a
	// single replica), "sqlite" (an embedded database file shared by every
	// process on the machine that opens it) or "postgres" (a PostgreSQL
	// database shared by any number of replicas).
	Driver string `yaml:"driver"`
	// Path is the SQLite database file (driver sqlite; required). Its
	// directory must exist; the file is created with mode 0600. The -wal
	// and -shm files beside it belong to it.
	Path string `yaml:"path"`
	// BusyTimeout is how long a write waits for another process holding
	// the database's write lock: default 5s, 100ms..1m (driver sqlite).
	BusyTimeout time.Duration `yaml:"busy_timeout"`
	// DSN is the PostgreSQL connection string (driver postgres; required),
	// a postgres:// URL or key=value pairs, read from an {env}/{file}
	// reference because it may hold a password, e.g.
	// postgres://mcpauthz:PASSWORD@db.internal:5432/mcpauthz?sslmode=verify-full.
	// The tables live in the schema mcpauthz, created by the first
	// migration (the role needs CREATE on the database then, or an
	// administrator creates the schema owned by the role).
	DSN secret.Ref `yaml:"dsn"`
	// PoolSize is the most connections each replica opens to PostgreSQL:
	// default 10, 1..1000 (driver postgres; overrides the DSN's
	// pool_max_conns).
	PoolSize int `yaml:"pool_size"`
	// ConnectTimeout bounds establishing one PostgreSQL connection,
	// including the check at start: default 5s, 100ms..1m (driver
	// postgres; overrides the DSN's connect_timeout).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Encryption is the key ring that seals secrets kept in the store.
	Encryption Encryption `yaml:"encryption"`
}

// Encryption is the store's key ring configuration.
type Encryption struct {
	// Keys are the AES-256 keys, each the base64 of exactly 32 random bytes
	// (`openssl rand -base64 32`) behind an {env}/{file} reference, with an
	// id (1-64 of A-Z a-z 0-9 . _ -) stored in every ciphertext. Required
	// with drivers sqlite and postgres (stored state is encrypted). With driver memory
	// and no keys, a random key private to the process is used.
	Keys []KeyConfig `yaml:"keys"`
	// Primary is the id of the key that encrypts; default: the first key.
	// The others only decrypt (rotation: add the new key, make it primary,
	// re-encrypt, then remove the old one).
	Primary string `yaml:"primary"`
}

// KeyConfig is one encryption key.
type KeyConfig struct {
	ID     string     `yaml:"id"`
	Secret secret.Ref `yaml:"secret"`
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Driver == "" {
		c.Driver = DriverMemory
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = DefaultBusyTimeout
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Encryption.Primary == "" && len(c.Encryption.Keys) > 0 {
		c.Encryption.Primary = c.Encryption.Keys[0].ID
	}
	return c
}

// Validate checks c without I/O. Problems are joined, each prefixed with
// its field path relative to this block (for example
// "encryption.keys[1].id: duplicate id \"k1\"").
func (c Config) Validate() error {
	var errs fielderr.List
	c.validateMisplaced(&errs)
	switch c.Driver {
	case "", DriverMemory:
	case DriverPostgres:
		c.validatePostgres(&errs)
	case DriverSQLite:
		c.validateSQLite(&errs)
	default:
		errs.Add("driver", fmt.Sprintf("unknown driver %q (want memory, sqlite or postgres)", urlcheck.Truncate(c.Driver, 16)))
	}
	c.validateEncryption(&errs)
	return errs.Err()
}

// validateMisplaced reports the fields set that another driver uses.
func (c Config) validateMisplaced(l *fielderr.List) {
	if c.Driver != DriverSQLite {
		if c.Path != "" {
			l.Add("path", "applies to driver sqlite only")
		}
		if c.BusyTimeout != 0 {
			l.Add("busy_timeout", "applies to driver sqlite only")
		}
	}
	if c.Driver != DriverPostgres {
		if !c.DSN.IsZero() {
			l.Add("dsn", "applies to driver postgres only")
		}
		if c.PoolSize != 0 {
			l.Add("pool_size", "applies to driver postgres only")
		}
		if c.ConnectTimeout != 0 {
			l.Add("connect_timeout", "applies to driver postgres only")
		}
	}
}

// validatePostgres checks the fields driver postgres uses.
func (c Config) validatePostgres(l *fielderr.List) {
	if c.DSN.IsZero() {
		l.Add("dsn", "required with driver postgres: {env: NAME} or {file: PATH} holding the connection string "+
			"(postgres://USER:PASSWORD@HOST:5432/DATABASE?sslmode=verify-full)")
	} else if err := c.DSN.Validate(); err != nil {
		l.Add("dsn", strings.TrimPrefix(err.Error(), "secret: "))
	}
	if c.PoolSize != 0 && (c.PoolSize < 1 || c.PoolSize > MaxPoolSize) {
		l.Add("pool_size", fmt.Sprintf("must be between 1 and %d (default %d)", MaxPoolSize, DefaultPoolSize))
	}
	if c.ConnectTimeout != 0 && (c.ConnectTimeout < MinConnectTimeout || c.ConnectTimeout > MaxConnectTimeout) {
		l.Add("connect_timeout", fmt.Sprintf("must be between %s and %s (default %s)", MinConnectTimeout, MaxConnectTimeout, DefaultConnectTimeout))
	}
	if len(c.Encryption.Keys) == 0 {
		l.Add("encryption.keys", "required with driver postgres: stored state must be encrypted (one key: {id: k1, secret: {file: PATH}} holding `openssl rand -base64 32`)")
	}
}

// validateSQLite checks the fields driver sqlite uses.
func (c Config) validateSQLite(l *fielderr.List) {
	switch {
	case c.Path == "":
		l.Add("path", "required with driver sqlite (the database file, e.g. /var/lib/mcpauthz/state.db)")
	case len(c.Path) > 4096 || strings.ContainsFunc(c.Path, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		l.Add("path", "too long or contains control characters")
	case c.Path == ":memory:" || strings.HasPrefix(c.Path, "file:"):
		l.Add("path", "must be a file path (not a SQLite URI or :memory:)")
	}
	if c.BusyTimeout != 0 && (c.BusyTimeout < MinBusyTimeout || c.BusyTimeout > MaxBusyTimeout) {
		l.Add("busy_timeout", fmt.Sprintf("must be between %s and %s (default %s)", MinBusyTimeout, MaxBusyTimeout, DefaultBusyTimeout))
	}
	if len(c.Encryption.Keys) == 0 {
		l.Add("encryption.keys", "required with driver sqlite: state on disk must be encrypted (one key: {id: k1, secret: {file: PATH}} holding `openssl rand -base64 32`)")
	}
}

// validateEncryption checks the encryption keys and the primary key id.
func (c Config) validateEncryption(l *fielderr.List) {
	seen := map[string]bool{}
	for i, k := range c.Encryption.Keys {
		p := fmt.Sprintf("encryption.keys[%d]", i)
		if err := checkKeyID(k.ID); err != nil {
			l.Add(p+".id", err.Error())
		} else if seen[k.ID] {
			l.Add(p+".id", fmt.Sprintf("duplicate id %q", k.ID))
		}
		seen[k.ID] = true
		if k.Secret.IsZero() {
			l.Add(p+".secret", "required: {env: NAME} or {file: PATH}")
		} else if err := k.Secret.Validate(); err != nil {
			l.Add(p+".secret", strings.TrimPrefix(err.Error(), "secret: "))
		}
	}
	if p := c.Encryption.Primary; p != "" && !seen[p] {
		if len(c.Encryption.Keys) == 0 {
			l.Add("encryption.primary", "set without encryption.keys")
		} else {
			l.Add("encryption.primary", fmt.Sprintf("%q is not the id of one of encryption.keys", urlcheck.Truncate(p, 64)))
		}
	}
}

// Options are the optional collaborators of a store.
type Options struct {
	// Now defaults to time.Now; it decides expiry.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// PurgeInterval is how often expired records are deleted (default 1m;
	// negative: never, expired records stay invisible).
	PurgeInterval time.Duration
	// BusyTimeout overrides Config.BusyTimeout for OpenSQLite (default 5s).
	BusyTimeout time.Duration
	// PoolSize overrides Config.PoolSize for OpenPostgres (default 10).
	PoolSize int
	// ConnectTimeout overrides Config.ConnectTimeout for OpenPostgres
	// (default 5s).
	ConnectTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = DefaultPurgeInterval
	}
	if o.BusyTimeout == 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.PoolSize == 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	return o
}

// LoadKeyRing resolves the configured keys into a KeyRing. With no keys it
// returns a random per-process ring (NewRandomKeyRing). Errors name the
// field and the secret reference, never the key.
func LoadKeyRing(e Encryption) (*KeyRing, error) {
	if len(e.Keys) == 0 {
		return NewRandomKeyRing()
	}
	keys := make(map[string][]byte, len(e.Keys))
	defer func() {
		for _, k := range keys {
			clear(k)
		}
	}()
	for i, k := range e.Keys {
		v, err := k.Secret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("store: encryption.keys[%d].secret: %w", i, err)
		}
		b, err := decodeKey(v.Reveal())
		if err != nil {
			return nil, fmt.Errorf("store: encryption.keys[%d].secret (%s): %w", i, k.Secret, err)
		}
		keys[k.ID] = b
	}
	primary := e.Primary
	if primary == "" {
		primary = e.Keys[0].ID
	}
	return NewKeyRing(primary, keys)
}

// Open validates cfg, builds its key ring and opens the store (for SQLite:
// creates the file if needed; for PostgreSQL: connects; for both: runs
// migrations, and checks that the key ring decrypts what the database
// already holds). The caller closes the store.
//
// With driver memory and no keys the ring is random and private to this
// process; Open logs that state is single-replica.
func Open(ctx context.Context, cfg Config, opts Options) (Store, *KeyRing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("store: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	opts = opts.withDefaults()
	ring, err := LoadKeyRing(cfg.Encryption)
	if err != nil {
		return nil, nil, err
	}
	switch cfg.Driver {
	case DriverSQLite:
		opts.BusyTimeout = cfg.BusyTimeout
		s, err := OpenSQLite(ctx, cfg.Path, opts)
		if err != nil {
			return nil, nil, err
		}
		if err := checkCanary(ctx, s, ring); err != nil {
			_ = s.Close()
			return nil, nil, err
		}
		opts.Logger.Info("store: opened", "driver", cfg.Driver, "path", cfg.Path, "keys", ring)
		return s, ring, nil
	case DriverPostgres:
		dsn, err := cfg.DSN.Resolve()
		if err != nil {
			return nil, nil, fmt.Errorf("store: dsn: %w", err)
		}
		opts.PoolSize, opts.ConnectTimeout = cfg.PoolSize, cfg.ConnectTimeout
		s, err := OpenPostgres(ctx, dsn, opts)
		if err != nil {
			return nil, nil, err
		}
		if err := checkCanary(ctx, s, ring); err != nil {
			_ = s.Close()
			return nil, nil, err
		}
		opts.Logger.Info("store: opened", "driver", cfg.Driver, "database", s, "pool_size", cfg.PoolSize, "keys", ring)
		return s, ring, nil
	default:
		opts.Logger.Info("store: in-memory state: it lives in this process only, so run a single replica (set store.driver: sqlite to keep it)",
			"driver", DriverMemory, "keys", ring)
		return NewMemory(opts), ring, nil
	}
}

// canaryKey holds a value sealed under the ring, so a replica configured
// with keys that cannot read the database fails at start rather than at
// its first request.
const canaryKey = "store/canary"

func checkCanary(ctx context.Context, s Store, ring *KeyRing) error {
	aad := []byte(canaryKey)
	for range 3 {
		ct, v, err := s.Get(ctx, canaryKey)
		if errors.Is(err, ErrNotFound) {
			sealed, err := ring.Encrypt([]byte("mcpauthz store canary"), aad)
			if err != nil {
				return err
			}
			if _, _, err := s.PutIfAbsent(ctx, canaryKey, sealed, 0); err != nil {
				return fmt.Errorf("store: write canary: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("store: read canary: %w", err)
		}
		pt, err := ring.Decrypt(ct, aad)
		if err != nil {
			return fmt.Errorf("store: the configured encryption keys cannot read this database (check store.encryption.keys): %w", err)
		}
		if id, _ := KeyID(ct); id != ring.Primary() {
			// Re-seal under the primary so the old key can be retired.
			if sealed, err := ring.Encrypt(pt, aad); err == nil {
				if _, err := s.CompareAndSwap(ctx, canaryKey, v, sealed, 0); err != nil && !errors.Is(err, ErrConflict) {
					return fmt.Errorf("store: re-seal canary: %w", err)
				}
			}
		}
		return nil
	}
	return errors.New("store: canary: gave up after repeated races")
}

// Reseal re-encrypts, under the ring's primary key, every record under
// prefix that is sealed with aad = its own record key (the convention of
// this package's canary and of the issuer's generated keys) and not yet
// sealed with the primary. It returns how many records it rewrote. Run it
// after making a new key primary, before removing the old key from the
// ring. A record changed concurrently is skipped (its writer already used
// the primary); one that does not decrypt fails the call.
func Reseal(ctx context.Context, s Store, ring *KeyRing, prefix string) (int, error) {
	n := 0
	after := ""
	for {
		page, err := s.List(ctx, prefix, after, 100)
		if err != nil {
			return n, err
		}
		if len(page) == 0 {
			return n, nil
		}
		for _, e := range page {
			after = e.Key
			if id, err := KeyID(e.Value); err == nil && id == ring.Primary() {
				continue
			}
			pt, err := ring.Decrypt(e.Value, []byte(e.Key))
			if err != nil {
				return n, fmt.Errorf("store: reseal: record under %q: %w", prefix, err)
			}
			sealed, err := ring.Encrypt(pt, []byte(e.Key))
			clear(pt)
			if err != nil {
				return n, err
			}
			var ttl time.Duration
			if !e.ExpiresAt.IsZero() {
				if ttl = time.Until(e.ExpiresAt); ttl <= 0 {
					continue
				}
			}
			switch _, err := s.CompareAndSwap(ctx, e.Key, e.Version, sealed, ttl); {
			case err == nil:
				n++
			case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
			default:
				return n, fmt.Errorf("store: reseal: %w", err)
			}
		}
	}
}

// Migration reports what Migrate did.
type Migration struct {
	Driver string
	// Database names the database (a path, or a postgres:// URL without
	// the password).
	Database string
	// From and To are the schema versions before and after (equal: the
	// database was up to date). From is -1 when the driver cannot tell.
	From, To int
}

// Migrate validates cfg and brings the database's schema to this build's
// version without opening a store (no key ring needed), for running
// migrations ahead of a rollout. Driver memory keeps no schema: an error.
func Migrate(ctx context.Context, cfg Config, opts Options) (Migration, error) {
	if err := cfg.Validate(); err != nil {
		return Migration{}, fmt.Errorf("store: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	opts = opts.withDefaults()
	opts.PurgeInterval = -1
	switch cfg.Driver {
	case DriverSQLite:
		opts.BusyTimeout = cfg.BusyTimeout
		s, err := OpenSQLite(ctx, cfg.Path, opts)
		if err != nil {
			return Migration{}, err
		}
		return Migration{Driver: cfg.Driver, Database: cfg.Path, From: -1, To: SchemaVersion()}, s.Close()
	case DriverPostgres:
		dsn, err := cfg.DSN.Resolve()
		if err != nil {
			return Migration{}, fmt.Errorf("store: dsn: %w", err)
		}
		opts.ConnectTimeout = cfg.ConnectTimeout
		return MigratePostgres(ctx, dsn, opts)
	default:
		return Migration{}, errors.New("store: driver memory keeps its state in the serving process: there is nothing to migrate")
	}
}
