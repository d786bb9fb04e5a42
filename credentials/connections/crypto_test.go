package connections

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// TestSealedRecords: tokens are sealed bound to record key and generation;
// anything else fails closed with store.ErrDecrypt (and ErrUnavailable: the
// Check answers 503, never with another record's token).
func TestSealedRecords(t *testing.T) {
	tests := []struct {
		name   string
		damage func(e *env) *Manager // returns the manager to read with
	}{
		{"tampered ciphertext", func(e *env) *Manager {
			r := e.record(alice)
			r.sealed[len(r.sealed)-3] ^= 0x40
			e.rewrite(r)
			return e.m
		}},
		{"tampered key id", func(e *env) *Manager {
			r := e.record(alice)
			r.sealed[2] = 'x' // "k1" -> "x1": a key the ring does not hold
			e.rewrite(r)
			return e.m
		}},
		{"record copied to another user", func(e *env) *Manager {
			r := e.record(alice)
			r.key = bob
			v, _ := r.encode()
			if _, _, err := e.sqlite.PutIfAbsent(ctx, bob.recKey(), v, 0); err != nil {
				e.t.Fatal(err)
			}
			return e.m
		}},
		{"older generation restored", func(e *env) *Manager {
			r := e.record(alice)
			r.meta.Generation++ // metadata says 2, ciphertext is bound to 1
			e.rewrite(r)
			return e.m
		}},
		{"unknown key id (ring without k1)", func(e *env) *Manager {
			return e.manager(Config{}, newKeyRing(e.t, "k2", "k2"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.connect(e.m, alice, "alice")
			m := tc.damage(e)
			key := alice
			if tc.name == "record copied to another user" {
				key = bob
			}
			m.cache.del(key)
			tok, err := m.Token(ctx, key)
			if !errors.Is(err, store.ErrDecrypt) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Token = %v, %v; want ErrDecrypt and ErrUnavailable", tok, err)
			}
			if tok.AccessToken != "" {
				t.Fatal("a token was returned")
			}
			// Revoking still works (the tokens are dropped, not decrypted).
			if err := m.Revoke(ctx, key, Actor{Kind: "admin", ID: "root"}, ""); err != nil {
				t.Fatal(err)
			}
			_, err = m.Token(ctx, key)
			wantNeedsAuth(t, err, StatusRevoked)
		})
	}
}

// rewrite stores r as is (bypassing the Manager).
func (e *env) rewrite(r *record) {
	e.t.Helper()
	v, err := r.encode()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.sqlite.CompareAndSwap(ctx, r.key.recKey(), r.version, v, 0); err != nil {
		e.t.Fatal(err)
	}
}

func TestRotateKey(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	if _, err := e.m.Link(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.StartConnect(ctx, bob, "", ""); err != nil { // a pending flow
		t.Fatal(err)
	}
	before, err := e.m.Token(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	// Operator adds k2 as primary, keeps k1 to read, re-encrypts.
	keys := e.keys.with("k2")
	m2 := e.manager(Config{}, keys.ring(t, "k2"))
	n, err := m2.RotateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// alice's record and used flow, bob's flow, bob's link and linkbykey.
	if n != 5 {
		t.Errorf("RotateKey rewrote %d values, want 5", n)
	}
	if n, err := m2.RotateKey(ctx); err != nil || n != 0 {
		t.Errorf("second RotateKey = %d %v, want 0", n, err)
	}
	if id, _ := store.KeyID(e.record(alice).sealed); id != "k2" {
		t.Errorf("record sealed with %q after rotation", id)
	}
	// k1 can go: a replica with only k2 reads everything.
	m3 := e.manager(Config{}, testKeys{"k2": keys["k2"]}.ring(t, "k2"))
	after, err := m3.Token(ctx, alice)
	if err != nil || after.AccessToken != before.AccessToken {
		t.Fatalf("Token after rotation = %v %v", after, err)
	}
	if _, err := m3.StartConnect(ctx, bob, linkID(t, m3, bob), ""); err != nil {
		t.Fatalf("link sealed before rotation unusable after: %v", err)
	}
	if c := e.record(alice).meta.Generation; c != 1 {
		t.Errorf("rotation changed the generation to %d", c)
	}
	// The old ring alone no longer reads it.
	m1 := e.manager(Config{}, e.ring)
	if _, err := m1.Token(ctx, alice); !errors.Is(err, store.ErrDecrypt) {
		t.Errorf("k1-only Token after rotation = %v", err)
	}
}

func linkID(t *testing.T, m *Manager, k Key) string {
	t.Helper()
	l, err := m.Link(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(l, testPublicURL+"/connect/start?link=")
}

// TestNoPlaintextOnDisk: the SQLite files never hold a token in clear.
func TestNoPlaintextOnDisk(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	tk := e.tokens(alice)
	if tk.Access == "" || tk.Refresh == "" {
		t.Fatalf("tokens %v", tk.TokenType)
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(e.path + suffix)
		if err != nil {
			continue
		}
		for _, s := range []string{tk.Access, tk.Refresh, testClientSecret} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret in clear", e.path+suffix)
			}
		}
	}
}
