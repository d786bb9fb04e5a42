// Package store is the state that mcpauthz replicas share: a small
// bytes-only key-value [Store] with versions (compare-and-swap), create-once
// records (replicas racing to create the same record: exactly one wins),
// optional expiry and prefix listing, and a [KeyRing] cipher (AES-256-GCM,
// several keys with ids for rotation) that seals values before they reach
// the store.
//
// Three implementations pass the same contract tests (storetest): [Memory]
// (one process; tests and single-replica deployments), [SQLite] (an
// embedded database file, safe for several processes on one machine: WAL
// mode, a busy timeout, versioned migrations run at open) and PostgreSQL
// (many replicas: a pgx pool, migrations under an advisory lock).
//
// The store never sees plaintext secrets: callers encrypt with a [Cipher]
// and bind each ciphertext to its record key (the associated data), so a
// ciphertext copied to another record fails to decrypt.
//
// Keys are 1 to [MaxKeyLen] bytes of visible ASCII (0x21-0x7e); callers
// encode anything else (for example with base64url). Values are at most
// [MaxValueLen] bytes. Errors never contain values and never contain keys.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limits on records.
const (
	MaxKeyLen   = 512
	MaxValueLen = 1 << 20
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotFound: no live record under the key (absent or expired).
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: the record's version is not the one the caller expected.
	ErrConflict = errors.New("store: version conflict")
	// ErrInvalid: a key, prefix, value or ttl outside the limits.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrDecrypt: a ciphertext that does not open (tampered, bound to
	// another record, or sealed with a key the ring does not hold).
	ErrDecrypt = errors.New("store: cannot decrypt")
)

// Version identifies one state of a record. Versions are positive, unique
// within a store and increase with every write, so a record deleted and
// created again never reuses a version a caller may still hold. The zero
// Version means "none" (or, for Delete, "any").
type Version int64

// Entry is one record returned by List.
type Entry struct {
	Key     string
	Value   []byte
	Version Version
	// ExpiresAt is when the record stops being visible; zero: never.
	ExpiresAt time.Time
}

// Store is a bytes-only key-value store shared by replicas. Expired records
// behave as absent everywhere. Implementations are safe for concurrent use
// and copy values in and out (callers may reuse their slices).
//
// A ttl of 0 means the record never expires; a positive ttl makes it expire
// that long after the write; a negative ttl is invalid.
type Store interface {
	// Get returns the value and version of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, Version, error)
	// PutIfAbsent creates key unless a live record exists. created reports
	// whether this call created it (v is then its version); when another
	// writer got there first it returns 0, false, nil and the caller reads
	// the winner's record with Get. Among concurrent callers exactly one
	// creates the record.
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (v Version, created bool, err error)
	// CompareAndSwap replaces key's value and ttl if its version is still
	// old, and returns the new version. ErrNotFound when there is no live
	// record, ErrConflict when the version differs.
	CompareAndSwap(ctx context.Context, key string, old Version, value []byte, ttl time.Duration) (Version, error)
	// Delete removes key if its version is old (any version when old is 0).
	// ErrNotFound when there is no live record, ErrConflict when the version
	// differs.
	Delete(ctx context.Context, key string, old Version) error
	// List returns the live records whose keys start with prefix and sort
	// after after (byte order), in key order, at most limit of them (0: no
	// limit). Page with after = the last key of the previous page.
	List(ctx context.Context, prefix, after string, limit int) ([]Entry, error)
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

// checkKey validates a record key. It never echoes the key.
func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: key must be 1 to %d bytes", ErrInvalid, MaxKeyLen)
	}
	if !visibleASCII(key) {
		return fmt.Errorf("%w: key must be visible ASCII (0x21-0x7e)", ErrInvalid)
	}
	return nil
}

func checkPrefix(prefix, after string, limit int) error {
	if len(prefix) > MaxKeyLen || !visibleASCII(prefix) {
		return fmt.Errorf("%w: prefix must be at most %d bytes of visible ASCII", ErrInvalid, MaxKeyLen)
	}
	if len(after) > MaxKeyLen || !visibleASCII(after) {
		return fmt.Errorf("%w: after must be at most %d bytes of visible ASCII", ErrInvalid, MaxKeyLen)
	}
	if limit < 0 {
		return fmt.Errorf("%w: limit must not be negative", ErrInvalid)
	}
	return nil
}

func checkWrite(key string, value []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > MaxValueLen {
		return fmt.Errorf("%w: value is longer than %d bytes", ErrInvalid, MaxValueLen)
	}
	if ttl < 0 {
		return fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// expiry returns the expiry instant for ttl written at now (zero: never).
func expiry(now time.Time, ttl time.Duration) time.Time {
	if ttl == 0 {
		return time.Time{}
	}
	// Millisecond precision, as stored by SQLite.
	return time.UnixMilli(now.Add(ttl).UnixMilli())
}

// live reports whether a record expiring at exp is visible at now.
func live(exp, now time.Time) bool { return exp.IsZero() || exp.After(now) }

// checkOpen is the check of a driver whose closed flag needs no lock
// (SQLite, PostgreSQL): ErrClosed once closed, then ctx's error.
func checkOpen(ctx context.Context, closed bool) error {
	if closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
