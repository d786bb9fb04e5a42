package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func testKey(b byte) []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = b + byte(i*7)
	}
	return k
}

func mustRing(t *testing.T, primary string, keys map[string][]byte) *KeyRing {
	t.Helper()
	r, err := NewKeyRing(primary, keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestKeyRingRoundTripAndBinding(t *testing.T) {
	r := mustRing(t, "k1", map[string][]byte{"k1": testKey(1)})
	pt := []byte("refresh-token-value")
	aad := []byte("conn/acme/alice/github")
	ct, err := r.Encrypt(pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, pt) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := r.Decrypt(ct, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Decrypt = %q %v", got, err)
	}
	if id, err := KeyID(ct); err != nil || id != "k1" {
		t.Fatalf("KeyID = %q %v", id, err)
	}
	// Two encryptions of the same value differ (random nonces).
	ct2, _ := r.Encrypt(pt, aad)
	if bytes.Equal(ct, ct2) {
		t.Fatal("nonce reused")
	}

	tamper := func(f func(c []byte)) []byte { c := bytes.Clone(ct); f(c); return c }
	for _, tc := range []struct {
		name string
		ct   []byte
		aad  []byte
		want string
	}{
		{"other record", ct, []byte("conn/acme/mallory/github"), "authentication failed"},
		{"no aad", ct, nil, "authentication failed"},
		{"flipped body byte", tamper(func(c []byte) { c[len(c)-20] ^= 1 }), aad, "authentication failed"},
		{"flipped tag byte", tamper(func(c []byte) { c[len(c)-1] ^= 0x80 }), aad, "authentication failed"},
		{"truncated", ct[:len(ct)-1], aad, "authentication failed"},
		{"header only", ct[:4], aad, "authentication failed"},
		{"unknown version", tamper(func(c []byte) { c[0] = 2 }), aad, "unknown envelope"},
		{"empty", nil, aad, "unknown envelope"},
		{"key id too long for the buffer", []byte{1, 200, 'k'}, aad, "truncated envelope"},
		{"bad key id", []byte{1, 2, 'k', ' '}, aad, "malformed key id"},
		{"unknown key", tamper(func(c []byte) { c[3] = '9' }), aad, `sealed with key "k9", which is not in the key ring`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := r.Decrypt(tc.ct, tc.aad)
			if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), tc.want) || out != nil {
				t.Fatalf("Decrypt = %q %v, want ErrDecrypt containing %q", out, err, tc.want)
			}
		})
	}
}

// TestKeyRingRotation: the primary encrypts, every listed key decrypts, a
// ring without the sealing key fails, and the key id in the envelope is
// authenticated (changing it to another key of the ring fails too).
func TestKeyRingRotation(t *testing.T) {
	aad := []byte("rec")
	old := mustRing(t, "k1", map[string][]byte{"k1": testKey(1)})
	ctOld, _ := old.Encrypt([]byte("sealed by k1"), aad)

	both := mustRing(t, "k2", map[string][]byte{"k1": testKey(1), "k2": testKey(2)})
	if got, err := both.Decrypt(ctOld, aad); err != nil || string(got) != "sealed by k1" {
		t.Fatalf("rotated ring cannot open an old value: %q %v", got, err)
	}
	ctNew, _ := both.Encrypt([]byte("sealed by k2"), aad)
	if id, _ := KeyID(ctNew); id != "k2" || both.Primary() != "k2" {
		t.Fatalf("new values sealed with %q, primary %q", id, both.Primary())
	}
	if _, err := old.Decrypt(ctNew, aad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("ring without k2 opened a k2 value: %v", err)
	}
	newOnly := mustRing(t, "k2", map[string][]byte{"k2": testKey(2)})
	if _, err := newOnly.Decrypt(ctOld, aad); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("retired key: %v", err)
	}
	// Relabel a k1 ciphertext as k2 (same length ids): the header is
	// authenticated, so it fails.
	relabeled := bytes.Clone(ctOld)
	relabeled[3] = '2'
	if _, err := both.Decrypt(relabeled, aad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("relabeled key id accepted: %v", err)
	}
	// Same id, different key bytes: fails.
	impostor := mustRing(t, "k1", map[string][]byte{"k1": testKey(9)})
	if _, err := impostor.Decrypt(ctOld, aad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key bytes opened a value: %v", err)
	}
	if got := both.KeyIDs(); fmt.Sprint(got) != "[k1 k2]" {
		t.Fatalf("KeyIDs = %v", got)
	}
}

func TestNewKeyRingErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		primary string
		keys    map[string][]byte
		want    string
	}{
		{"no keys", "k", nil, "no keys"},
		{"short key", "k", map[string][]byte{"k": make([]byte, 16)}, "exactly 32 bytes, got 16"},
		{"zero key", "k", map[string][]byte{"k": make([]byte, 32)}, "does not look random"},
		{"bad id", "a b", map[string][]byte{"a b": testKey(1)}, "key id must use only"},
		{"long id", strings.Repeat("k", 65), map[string][]byte{strings.Repeat("k", 65): testKey(1)}, "1 to 64 characters"},
		{"primary missing", "k2", map[string][]byte{"k1": testKey(1)}, `primary key "k2" is not one of the keys`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewKeyRing(tc.primary, tc.keys); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestKeyMaterialNeverPrinted: printing or logging a ring, and errors from
// loading keys, never show key bytes.
func TestKeyMaterialNeverPrinted(t *testing.T) {
	raw := testKey(3)
	b64 := base64.StdEncoding.EncodeToString(raw)
	t.Setenv("STORE_TEST_KEY", b64)
	r, err := LoadKeyRing(Encryption{Keys: []KeyConfig{{ID: "k1", Secret: secret.Ref{Env: "STORE_TEST_KEY"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("ring", "r", r)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("ring", "r", r)
	out := fmt.Sprintf("%v %+v %#v %s %q %x", r, r, r, r, r, r) + fmt.Sprint(r) + logs.String()
	for _, s := range []string{b64, hex.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw), fmt.Sprint(raw)[1:30]} {
		if strings.Contains(out, s) {
			t.Fatalf("output contains key material %q:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "k1") || !strings.Contains(logs.String(), `"primary":"k1"`) {
		t.Fatalf("ring output lacks its key id:\n%s", out)
	}

	// Bad key texts: errors name the reference, never the text.
	for _, bad := range []string{
		base64.StdEncoding.EncodeToString(raw[:31]),
		"not base64 but a secret-ish passphrase!",
		base64.StdEncoding.EncodeToString(make([]byte, 32)),
	} {
		t.Setenv("STORE_TEST_BAD", bad)
		_, err := LoadKeyRing(Encryption{Keys: []KeyConfig{{ID: "k1", Secret: secret.Ref{Env: "STORE_TEST_BAD"}}}})
		if err == nil || strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "encryption.keys[0].secret (env:STORE_TEST_BAD)") {
			t.Fatalf("bad key: %v", err)
		}
	}
}

func TestLoadKeyRing(t *testing.T) {
	dir := t.TempDir()
	f1 := filepath.Join(dir, "k1")
	if err := os.WriteFile(f1, []byte(base64.StdEncoding.EncodeToString(testKey(1))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STORE_K2", base64.RawURLEncoding.EncodeToString(testKey(2)))
	keys := []KeyConfig{{ID: "k1", Secret: secret.Ref{File: f1}}, {ID: "k2", Secret: secret.Ref{Env: "STORE_K2"}}}
	r, err := LoadKeyRing(Encryption{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if r.Primary() != "k1" || r.Ephemeral() {
		t.Fatalf("default primary %q ephemeral %t", r.Primary(), r.Ephemeral())
	}
	r2, err := LoadKeyRing(Encryption{Keys: keys, Primary: "k2"})
	if err != nil || r2.Primary() != "k2" {
		t.Fatalf("primary k2: %v %v", r2, err)
	}
	// The same key bytes under the same ids interoperate.
	ct, _ := r2.Encrypt([]byte("x"), []byte("a"))
	if _, err := r.Decrypt(ct, []byte("a")); err != nil {
		t.Fatal(err)
	}
	eph, err := LoadKeyRing(Encryption{})
	if err != nil || !eph.Ephemeral() {
		t.Fatalf("no keys: %v %v", eph, err)
	}
	eph2, _ := NewRandomKeyRing()
	ct, _ = eph.Encrypt([]byte("x"), nil)
	if _, err := eph2.Decrypt(ct, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatal("two random rings share a key")
	}
	if _, err := LoadKeyRing(Encryption{Keys: []KeyConfig{{ID: "k", Secret: secret.Ref{Env: "STORE_UNSET_VAR"}}}}); err == nil ||
		!strings.Contains(err.Error(), `encryption.keys[0].secret: secret: env var "STORE_UNSET_VAR" is not set`) {
		t.Fatalf("unset env: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	key := func(id string) KeyConfig { return KeyConfig{ID: id, Secret: secret.Ref{File: "/run/secrets/" + id}} }
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"zero: memory", Config{}, nil},
		{"memory with keys", Config{Driver: "memory", Encryption: Encryption{Keys: []KeyConfig{key("a")}}}, nil},
		{"sqlite", Config{Driver: "sqlite", Path: "/var/lib/mcpauthz/state.db", BusyTimeout: 2e9,
			Encryption: Encryption{Keys: []KeyConfig{key("k2"), key("k1")}, Primary: "k1"}}, nil},

		{"unknown driver", Config{Driver: "mysql"}, []string{`driver: unknown driver "mysql" (want memory, sqlite or postgres)`}},
		{"sqlite without path or keys", Config{Driver: "sqlite"},
			[]string{"path: required with driver sqlite", "encryption.keys: required with driver sqlite: state on disk must be encrypted"}},
		{"sqlite uri", Config{Driver: "sqlite", Path: "file:x.db?mode=memory", Encryption: Encryption{Keys: []KeyConfig{key("a")}}},
			[]string{"path: must be a file path"}},
		{"sqlite busy timeout", Config{Driver: "sqlite", Path: "x.db", BusyTimeout: 1e6, Encryption: Encryption{Keys: []KeyConfig{key("a")}}},
			[]string{"busy_timeout: must be between 100ms and 1m0s (default 5s)"}},
		{"memory with path", Config{Path: "x.db", BusyTimeout: 1e9}, []string{"path: applies to driver sqlite only", "busy_timeout: applies to driver sqlite only"}},
		{"bad key id and dup", Config{Encryption: Encryption{Keys: []KeyConfig{key("a"), key("a"), {ID: "b c", Secret: secret.Ref{Env: "X"}}}}},
			[]string{`encryption.keys[1].id: duplicate id "a"`, "encryption.keys[2].id: key id must use only"}},
		{"missing secret", Config{Encryption: Encryption{Keys: []KeyConfig{{ID: "a"}}}}, []string{"encryption.keys[0].secret: required"}},
		{"bad secret", Config{Encryption: Encryption{Keys: []KeyConfig{{ID: "a", Secret: secret.Ref{Env: "1X"}}}}}, []string{"encryption.keys[0].secret: env \"1X\" is not a valid"}},
		{"unknown primary", Config{Encryption: Encryption{Keys: []KeyConfig{key("a")}, Primary: "b"}}, []string{`encryption.primary: "b" is not the id`}},
		{"primary without keys", Config{Encryption: Encryption{Primary: "b"}}, []string{"encryption.primary: set without encryption.keys"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("%d error lines, want %d: %v", n, len(tc.want), err)
			}
			if _, _, oerr := Open(context.Background(), tc.cfg, Options{}); oerr == nil || !strings.HasPrefix(oerr.Error(), "store: invalid config: ") {
				t.Errorf("Open accepted an invalid config: %v", oerr)
			}
		})
	}
}

// TestOpenSQLiteKeys: Open seals a canary, so a replica whose keys cannot
// read the database fails at start; a rotated ring (new primary, old key
// still listed) opens it and re-seals the canary, after which the old key
// can be dropped.
func TestOpenSQLiteKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	for i, k := range [][]byte{testKey(1), testKey(2), testKey(3)} {
		t.Setenv(fmt.Sprintf("STORE_OPEN_K%d", i+1), base64.StdEncoding.EncodeToString(k))
	}
	key := func(n int) KeyConfig {
		return KeyConfig{ID: fmt.Sprintf("k%d", n), Secret: secret.Ref{Env: fmt.Sprintf("STORE_OPEN_K%d", n)}}
	}
	open := func(keys ...KeyConfig) (*KeyRing, error) {
		s, ring, err := Open(ctx, Config{Driver: DriverSQLite, Path: path, Encryption: Encryption{Keys: keys}}, Options{})
		if err == nil {
			// The store works, and values sealed under the ring open.
			ct, _ := ring.Encrypt([]byte("v"), []byte("probe"))
			if _, _, err := s.PutIfAbsent(ctx, "probe/"+ring.Primary(), ct, 0); err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
		return ring, err
	}
	if _, err := open(key(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := open(key(3)); err == nil || !strings.Contains(err.Error(), "the configured encryption keys cannot read this database") {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := open(key(2), key(1)); err != nil {
		t.Fatalf("rotated ring: %v", err)
	}
	if _, err := open(key(2)); err != nil {
		t.Fatalf("after the canary was re-sealed under k2, k2 alone: %v", err)
	}

	// Memory without keys: an ephemeral ring.
	s, ring, err := Open(ctx, Config{}, Options{})
	if err != nil || !ring.Ephemeral() {
		t.Fatalf("memory: %v %v", ring, err)
	}
	if _, ok := s.(*Memory); !ok {
		t.Fatalf("memory driver opened %T", s)
	}
	s.Close()
}

// TestReseal: after a rotation, Reseal moves records sealed under the old
// key to the new primary, so the old key can be removed.
func TestReseal(t *testing.T) {
	ctx := context.Background()
	s := NewMemory(Options{PurgeInterval: -1})
	defer s.Close()
	old := mustRing(t, "k1", map[string][]byte{"k1": testKey(1)})
	for _, k := range []string{"mint/keys/a", "mint/keys/b", "other/c"} {
		ct, _ := old.Encrypt([]byte("v:"+k), []byte(k))
		if _, _, err := s.PutIfAbsent(ctx, k, ct, 0); err != nil {
			t.Fatal(err)
		}
	}
	both := mustRing(t, "k2", map[string][]byte{"k1": testKey(1), "k2": testKey(2)})
	if n, err := Reseal(ctx, s, both, "mint/"); err != nil || n != 2 {
		t.Fatalf("Reseal = %d %v, want 2", n, err)
	}
	if n, err := Reseal(ctx, s, both, "mint/"); err != nil || n != 0 {
		t.Fatalf("second Reseal = %d %v, want 0", n, err)
	}
	newOnly := mustRing(t, "k2", map[string][]byte{"k2": testKey(2)})
	for _, k := range []string{"mint/keys/a", "mint/keys/b"} {
		ct, _, _ := s.Get(ctx, k)
		if pt, err := newOnly.Decrypt(ct, []byte(k)); err != nil || string(pt) != "v:"+k {
			t.Fatalf("%s after reseal: %q %v", k, pt, err)
		}
	}
	ct, _, _ := s.Get(ctx, "other/c")
	if id, _ := KeyID(ct); id != "k1" {
		t.Fatalf("a record outside the prefix was resealed (%s)", id)
	}
	// A record that does not open under its own key fails the call.
	ct, _ = old.Encrypt([]byte("x"), []byte("elsewhere"))
	if _, _, err := s.PutIfAbsent(ctx, "mint/keys/moved", ct, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Reseal(ctx, s, both, "mint/"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Reseal of a misbound record = %v, want ErrDecrypt", err)
	}
}
