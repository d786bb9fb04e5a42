package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

// bundleServer is an OPA-style bundle server serving one mutable resource.
type bundleServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	etag     string
	status   int // non-zero: answer with this status
	requests atomic.Int64
	hdrs     []http.Header // request headers, in order
}

func newBundleServer(t *testing.T) *bundleServer {
	t.Helper()
	b := &bundleServer{}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *bundleServer) serve(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	b.mu.Lock()
	b.hdrs = append(b.hdrs, r.Header.Clone())
	body, etag, status := b.body, b.etag, b.status
	b.mu.Unlock()
	if r.URL.Path != "/bundles/mcp.tar.gz" {
		http.NotFound(w, r)
		return
	}
	if status != 0 {
		http.Error(w, "boom", status)
		return
	}
	if etag != "" && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(body)
}

func (b *bundleServer) set(body []byte, etag string) {
	b.mu.Lock()
	b.body, b.etag, b.status = body, etag, 0
	b.mu.Unlock()
}

func (b *bundleServer) fail(status int) {
	b.mu.Lock()
	b.status = status
	b.mu.Unlock()
}

func (b *bundleServer) lastHeader(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.hdrs) == 0 {
		return ""
	}
	return b.hdrs[len(b.hdrs)-1].Get(name)
}

func (b *bundleServer) bundleURL() string { return b.URL + "/bundles/mcp.tar.gz" }

// tarGz builds a bundle tarball in memory (sorted, `opa build` layout).
func tarGz(t testing.TB, files map[string]string) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range names {
		c := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: "/" + name, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// policyAB returns bundle v: "A" allows every call, anything else denies.
func policyAB(v string) map[string]string {
	return map[string]string{
		".manifest": fmt.Sprintf(`{"revision":%q,"roots":["mcpauthz"]}`, v),
		"policy.rego": fmt.Sprintf(`package mcpauthz

decision := {"allow": %t, "reason": %q}
`, v == "A", v),
	}
}

func remoteConfig(url string, mod func(*BundleSource)) Config {
	src := BundleSource{URL: url, Polling: Polling{MinDelay: time.Second, MaxDelay: 10 * time.Second}}
	if mod != nil {
		mod(&src)
	}
	return Config{Bundles: []BundleSource{src}, StartupTimeout: 300 * time.Millisecond}
}

// maxRand makes jitter deterministic: always the largest value.
func maxRand(n int64) int64 { return n - 1 }

func TestRemoteETagAndNotModified(t *testing.T) {
	srv := newBundleServer(t)
	srv.set(tarGz(t, policyAB("A")), `"a1"`)
	e := newEngine(t, remoteConfig(srv.bundleURL(), nil))
	e.randN = maxRand
	ctx := context.Background()
	s := e.remotes[0]

	if n := srv.requests.Load(); n != 1 || srv.lastHeader("If-None-Match") != "" {
		t.Fatalf("initial: %d requests, If-None-Match %q", n, srv.lastHeader("If-None-Match"))
	}
	if got := evalReason(t, e); got != "A" {
		t.Fatalf("serving %q, want A", got)
	}
	if d := e.pollOnce(ctx, s); d != 10*time.Second {
		t.Fatalf("delay after 304 = %s, want max_delay 10s (maxRand)", d)
	}
	if n := srv.requests.Load(); n != 2 || srv.lastHeader("If-None-Match") != `"a1"` {
		t.Fatalf("poll: %d requests, If-None-Match %q", n, srv.lastHeader("If-None-Match"))
	}
	if c := e.compiles.Load(); c != 1 {
		t.Fatalf("304 recompiled: %d compiles", c)
	}
	st := e.Status()
	src := st.Sources[0]
	if st.Loads != 1 || st.Failures != 0 || st.LastError != "" || st.Revision != "A" ||
		src.Name != "mcp" || src.URL != srv.bundleURL() || src.ETag != `"a1"` || src.Revision != "A" ||
		src.ActivatedFrom != FromDownload || src.LastError != "" || !src.LastSuccess.Equal(src.LastAttempt) || src.Persisted {
		t.Fatalf("status after 304 = %+v", st)
	}

	srv.set(tarGz(t, policyAB("B")), `"b1"`)
	e.pollOnce(ctx, s)
	if got := evalReason(t, e); got != "B" {
		t.Fatalf("serving %q after change, want B", got)
	}
	if n := srv.requests.Load(); n != 3 || srv.lastHeader("If-None-Match") != `"a1"` {
		t.Fatalf("poll 2: %d requests, If-None-Match %q", n, srv.lastHeader("If-None-Match"))
	}
	if st := e.Status(); st.Loads != 2 || st.Revision != "B" || st.Sources[0].ETag != `"b1"` {
		t.Fatalf("status after change = %+v", st)
	}
	e.pollOnce(ctx, s)
	if srv.lastHeader("If-None-Match") != `"b1"` || e.compiles.Load() != 2 {
		t.Fatalf("If-None-Match %q, compiles %d", srv.lastHeader("If-None-Match"), e.compiles.Load())
	}
}

func TestBackoffDelay(t *testing.T) {
	half := func(n int64) int64 { return n / 2 }
	zero := func(int64) int64 { return 0 }
	tests := []struct {
		name     string
		failures int
		max      time.Duration
		randN    func(int64) int64
		want     time.Duration
	}{
		{"first failure, top of range", 1, time.Minute, maxRand, time.Second},
		{"second failure doubles", 2, time.Minute, maxRand, 2 * time.Second},
		{"fourth failure", 4, time.Minute, maxRand, 8 * time.Second},
		{"capped at max_delay", 7, time.Minute, maxRand, time.Minute},
		{"huge failure count stays capped", 1000, time.Minute, maxRand, time.Minute},
		{"jitter: half the range", 4, time.Minute, half, 4 * time.Second},
		{"jitter: zero hits the floor", 4, time.Minute, zero, backoffFloor},
		{"zero failures treated as one", 0, time.Minute, maxRand, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoffDelay(tc.failures, tc.max, tc.randN); got != tc.want {
				t.Fatalf("backoffDelay(%d) = %s, want %s", tc.failures, got, tc.want)
			}
		})
	}
	t.Run("poll delay spans [min,max]", func(t *testing.T) {
		p := Polling{MinDelay: 10 * time.Second, MaxDelay: 60 * time.Second}
		if lo, hi := pollDelay(p, zero), pollDelay(p, maxRand); lo != 10*time.Second || hi != 60*time.Second {
			t.Fatalf("pollDelay range = [%s, %s]", lo, hi)
		}
	})
}

func TestRemoteFailuresBackOffAndRecover(t *testing.T) {
	srv := newBundleServer(t)
	srv.set(tarGz(t, policyAB("A")), `"a1"`)
	e := newEngine(t, remoteConfig(srv.bundleURL(), nil))
	var ranges []int64 // the n of every randN call: the jitter range
	e.randN = func(n int64) int64 { ranges = append(ranges, n); return n - 1 }
	s := e.remotes[0]
	ctx := context.Background()

	srv.fail(http.StatusInternalServerError)
	var got []time.Duration
	for range 6 {
		got = append(got, e.pollOnce(ctx, s))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("backoff delays = %v, want %v", got, want)
	}
	for i, n := range ranges {
		if n != int64(want[i])+1 {
			t.Fatalf("jitter range %d = %d, want [0, %s]", i, n, want[i])
		}
	}
	st := e.Status()
	if st.Failures != 6 || !strings.Contains(st.LastError, "unexpected status 500") || !strings.Contains(st.Sources[0].LastError, "bundle mcp: download") ||
		st.Revision != "A" || !st.Ready {
		t.Fatalf("status while failing = %+v", st)
	}
	if got := evalReason(t, e); got != "A" {
		t.Fatalf("serving %q while the server fails, want A", got)
	}

	srv.set(tarGz(t, policyAB("A")), `"a1"`)
	if d := e.pollOnce(ctx, s); d != 10*time.Second || s.failures != 0 {
		t.Fatalf("after recovery: delay %s, failures %d", d, s.failures)
	}
	if st := e.Status(); st.LastError != "" || st.Sources[0].LastError != "" {
		t.Fatalf("error not cleared: %+v", st)
	}
}

func TestRemoteRefusesBadBundles(t *testing.T) {
	big := make([]byte, 8<<10)
	_, _ = rand.Read(big)
	tests := []struct {
		name   string
		body   []byte
		status int
		want   string
	}{
		{"500", nil, http.StatusInternalServerError, "unexpected status 500 Internal Server Error"},
		{"404", nil, http.StatusNotFound, "unexpected status 404"},
		{"garbage", []byte("<html>not a bundle</html>"), 0, "bundle mcp: not a gzip tarball"},
		{"gzip but not tar", gzipBytes(t, []byte("plain text, not a tar archive....")), 0, "bundle mcp:"},
		{"too large", big, 0, "bundle is too large"},
		{"syntax error", tarGz(t, map[string]string{"policy.rego": "package mcpauthz\n\ndecision := {{\n"}), 0, "mcp/policy.rego:4: rego_parse_error"},
		{"compile error", tarGz(t, map[string]string{"policy.rego": "package mcpauthz\ndecision := nope\n"}), 0, "mcp/policy.rego:2: rego_unsafe_var_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBundleServer(t)
			srv.set(tarGz(t, policyAB("A")), `"a1"`)
			e := newEngine(t, remoteConfig(srv.bundleURL(), func(b *BundleSource) { b.SizeLimitBytes = 4 << 10 }))
			srv.set(tc.body, `"x"`)
			if tc.status != 0 {
				srv.fail(tc.status)
			}
			e.pollOnce(context.Background(), e.remotes[0])
			if got := evalReason(t, e); got != "A" {
				t.Fatalf("serving %q, want A", got)
			}
			st := e.Status()
			if st.Failures != 1 || st.Loads != 1 || st.Revision != "A" || !strings.Contains(st.LastError, tc.want) ||
				!strings.Contains(st.Sources[0].LastError, tc.want) || st.Sources[0].ETag != `"a1"` {
				t.Fatalf("status = %+v\nwant error containing %q", st, tc.want)
			}
			// The failed bundle's ETag is not remembered: the next poll asks again.
			e.pollOnce(context.Background(), e.remotes[0])
			if inm := srv.lastHeader("If-None-Match"); inm != `"a1"` {
				t.Fatalf("If-None-Match after failure = %q, want the serving bundle's", inm)
			}
		})
	}
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	_, _ = gz.Write(b)
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testKey is a signing key pair in PEM.
type testKey struct {
	id, alg         string
	private, public string
}

func newTestKey(t *testing.T, id, alg string) testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "PS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{
		id: id, alg: alg,
		private: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})),
		public:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}
}

func (k testKey) signing(scope string) *Signing {
	return &Signing{Keys: []VerificationKey{{ID: k.id, Algorithm: k.alg, PublicKey: KeySource{PEM: k.public}}}, Scope: scope}
}

// signedBundle builds a bundle signed the way `opa build --signing-key`
// does (bundle.GenerateSignature + bundle.Writer). tamper, if set, changes
// the bundle after signing.
func signedBundle(t *testing.T, k testKey, scope, v string, tamper func(*bundle.Bundle)) []byte {
	t.Helper()
	return signedRego(t, k, scope, v, policyAB(v)["policy.rego"], tamper)
}

// signedRego signs a bundle with revision v and policy.rego = src.
func signedRego(t *testing.T, k testKey, scope, v, src string, tamper func(*bundle.Bundle)) []byte {
	t.Helper()
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: v, Roots: &[]string{"mcpauthz"}},
		Data:     map[string]any{},
		Modules:  []bundle.ModuleFile{{URL: "/policy.rego", Path: "/policy.rego", Raw: []byte(src)}},
	}
	claims := ""
	if scope != "" {
		claims = filepath.Join(t.TempDir(), "claims.json")
		if err := os.WriteFile(claims, []byte(fmt.Sprintf(`{"scope":%q}`, scope)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.GenerateSignature(bundle.NewSigningConfig(k.private, k.alg, claims), k.id, false); err != nil {
		t.Fatalf("sign: %v", err)
	}
	if tamper != nil {
		tamper(&b)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).DisableFormat(true).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRemoteSignedBundles(t *testing.T) {
	keys := map[string]testKey{}
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
		keys[alg] = newTestKey(t, "k-"+alg, alg)
	}
	for alg, k := range keys {
		t.Run("accepts "+alg, func(t *testing.T) {
			srv := newBundleServer(t)
			srv.set(signedBundle(t, k, "", "A", nil), `"a"`)
			e := newEngine(t, remoteConfig(srv.bundleURL(), func(b *BundleSource) { b.Signing = k.signing("") }))
			srv.set(signedBundle(t, k, "", "B", nil), `"b"`)
			e.pollOnce(context.Background(), e.remotes[0])
			if got := evalReason(t, e); got != "B" {
				t.Fatalf("serving %q, want B", got)
			}
		})
	}

	rs := keys["RS256"]
	other := keys["ES256"]
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"tampered after signing", signedBundle(t, rs, "", "B", func(b *bundle.Bundle) {
			b.Modules[0].Raw = []byte(strings.Replace(string(b.Modules[0].Raw), "false", "true", 1))
		}), "signature verification failed: policy.rego: digest mismatch"},
		{"file added after signing", signedBundle(t, rs, "", "B", func(b *bundle.Bundle) {
			b.Modules = append(b.Modules, bundle.ModuleFile{URL: "/extra.rego", Path: "/extra.rego", Raw: []byte("package mcpauthz.extra\nx := 1\n")})
		}), "signature verification failed: file extra.rego not included in bundle signature"},
		{"unsigned", tarGz(t, policyAB("B")), "signature verification failed: bundle missing .signatures.json file"},
		{"signed by an unknown key", signedBundle(t, other, "", "B", nil), "signature verification failed: verification key corresponding to ID k-ES256 not found"},
		{"wrong scope", signedBundle(t, rs, "write", "B", nil), "signature verification failed: scope mismatch"},
		{"key id forged", signedBundle(t, testKey{id: rs.id, alg: "ES256", private: other.private}, "", "B", nil), "signature verification failed: failed to verify JWT signature"},
	}
	for _, tc := range tests {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			srv := newBundleServer(t)
			srv.set(signedBundle(t, rs, "", "A", nil), `"a"`)
			e := newEngine(t, remoteConfig(srv.bundleURL(), func(b *BundleSource) { b.Signing = rs.signing("") }))
			srv.set(tc.body, `"b"`)
			e.pollOnce(context.Background(), e.remotes[0])
			if got := evalReason(t, e); got != "A" {
				t.Fatalf("serving %q, want A", got)
			}
			st := e.Status()
			if !strings.Contains(st.LastError, tc.want) || st.Failures != 1 || st.Revision != "A" {
				t.Fatalf("status = %+v\nwant error containing %q", st, tc.want)
			}
		})
	}

	t.Run("scope and keyid honored", func(t *testing.T) {
		srv := newBundleServer(t)
		srv.set(signedBundle(t, rs, "write", "A", nil), `"a"`)
		sg := rs.signing("write")
		sg.KeyID = rs.id
		e := newEngine(t, remoteConfig(srv.bundleURL(), func(b *BundleSource) { b.Signing = sg }))
		if got := evalReason(t, e); got != "A" {
			t.Fatalf("serving %q", got)
		}
	})
	t.Run("signed bundle with a syntax error reports file:line", func(t *testing.T) {
		srv := newBundleServer(t)
		srv.set(signedBundle(t, rs, "", "A", nil), `"a"`)
		e := newEngine(t, remoteConfig(srv.bundleURL(), func(b *BundleSource) { b.Signing = rs.signing("") }))
		srv.set(signedRego(t, rs, "", "B", "package mcpauthz\n\ndecision := {{\n", nil), `"b"`)
		e.pollOnce(context.Background(), e.remotes[0])
		if st := e.Status(); !strings.Contains(st.LastError, "policy.rego:4: rego_parse_error") || strings.Contains(st.LastError, "signature verification failed") {
			t.Fatalf("LastError = %q", st.LastError)
		}
	})
}

func TestSignedBundleWithoutKeysRefused(t *testing.T) {
	k := newTestKey(t, "k1", "ES256")
	_, err := readTarball(context.Background(), "x", signedBundle(t, k, "", "A", nil), nil)
	if err == nil || !strings.Contains(err.Error(), "the bundle is signed (.signatures.json) but this source configures no signing keys") {
		t.Fatalf("err = %v", err)
	}
	// Unsigned bundles load as before.
	if _, err := readTarball(context.Background(), "x", tarGz(t, policyAB("A")), nil); err != nil {
		t.Fatal(err)
	}
}

func TestSignedPathSources(t *testing.T) {
	k := newTestKey(t, "k1", "ES256")
	signed := signedBundle(t, k, "", "A", nil)
	tmp := t.TempDir()
	tarPath := filepath.Join(tmp, "signed.tar.gz")
	if err := os.WriteFile(tarPath, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(tmp, "pub.pem")
	if err := os.WriteFile(keyFile, []byte(k.public), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same bundle unpacked into a directory, plus a README (signed
	// bundles must verify every file, so it has to be excluded).
	dir := filepath.Join(tmp, "dir")
	vc, err := verificationConfig(&Signing{Keys: []VerificationKey{{ID: "k1", Algorithm: "ES256", PublicKey: KeySource{PEM: k.public}}}})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := readTarball(context.Background(), "x", signed, vc)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{".signatures.json": sigFile(t, signed)}
	for _, f := range rb.files {
		files[strings.TrimPrefix(f.path, "/")] = string(f.data)
	}
	files["data.json"] = "{}"
	files["README.md"] = "docs"
	writeFiles(t, dir, files)

	sg := &Signing{Keys: []VerificationKey{{ID: "k1", Algorithm: "ES256", PublicKey: KeySource{File: keyFile}}}, ExcludeFiles: []string{"README.md"}}
	for _, p := range []string{tarPath, dir} {
		e := newEngine(t, Config{Bundles: []BundleSource{{Path: p, Signing: sg}}})
		if got := evalReason(t, e); got != "A" {
			t.Fatalf("%s: serving %q", p, got)
		}
		if st := e.Status(); st.Sources[0].ActivatedFrom != FromPath || st.Sources[0].Path != p || st.Sources[0].Revision != "A" {
			t.Fatalf("status = %+v", st)
		}
	}
	// Tamper with the directory: reload refuses, A keeps serving.
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir, Signing: sg}}})
	writeFiles(t, dir, map[string]string{"policy.rego": policyAB("B")["policy.rego"]})
	if err := e.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("Reload err = %v", err)
	}
	if got := evalReason(t, e); got != "A" {
		t.Fatalf("serving %q", got)
	}
	if st := e.Status(); !strings.Contains(st.Sources[0].LastError, "digest mismatch") {
		t.Fatalf("source status = %+v", st.Sources[0])
	}
}

// sigFile extracts .signatures.json from a bundle tarball.
func sigFile(t *testing.T, tgz []byte) string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no .signatures.json: %v", err)
		}
		if filepath.Base(h.Name) == ".signatures.json" {
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(tr)
			return buf.String()
		}
	}
}

func TestRemotePersistence(t *testing.T) {
	k := newTestKey(t, "k1", "ES256")
	cfgFor := func(url, dir string) Config {
		c := remoteConfig(url, func(b *BundleSource) { b.Persist = true; b.Signing = k.signing(""); b.Name = "mcp" })
		c.PersistDir = dir
		return c
	}
	dir := filepath.Join(t.TempDir(), "persist")
	srv := newBundleServer(t)
	bundleA := signedBundle(t, k, "", "A", nil)
	srv.set(bundleA, `"a"`)
	e := newEngine(t, cfgFor(srv.bundleURL(), dir))
	file := filepath.Join(dir, "mcp.tar.gz")
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, bundleA) {
		t.Fatalf("persisted file: err %v, equal %v", err, bytes.Equal(got, bundleA))
	}
	if info, _ := os.Stat(file); info.Mode().Perm() != 0o600 {
		t.Fatalf("persisted file mode %v", info.Mode())
	}
	if st := e.Status().Sources[0]; !st.Persisted || st.ActivatedFrom != FromDownload {
		t.Fatalf("source status = %+v", st)
	}

	// A bundle that fails to activate is not persisted.
	srv.set(signedRego(t, k, "", "B", "package mcpauthz\ndecision := nope\n", nil), `"bad"`)
	e.pollOnce(context.Background(), e.remotes[0])
	if got, _ := os.ReadFile(file); !bytes.Equal(got, bundleA) {
		t.Fatal("a refused bundle replaced the persisted one")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("persist dir holds %d entries, want 1 (no temp files)", len(entries))
	}

	t.Run("server down: start from the persisted bundle", func(t *testing.T) {
		down := newBundleServer(t)
		down.fail(http.StatusServiceUnavailable)
		e := newEngine(t, cfgFor(down.bundleURL(), dir))
		if got := evalReason(t, e); got != "A" {
			t.Fatalf("serving %q", got)
		}
		st := e.Status()
		src := st.Sources[0]
		if !st.Ready || st.Revision != "A" || src.ActivatedFrom != FromPersisted || !src.Persisted ||
			!strings.Contains(src.LastError, "unexpected status 503") || src.ETag != "" || down.requests.Load() != 1 {
			t.Fatalf("status = %+v (requests %d)", st, down.requests.Load())
		}
		// Once the server is back, the next poll downloads and activates.
		down.set(signedBundle(t, k, "", "B", nil), `"b"`)
		if e.remotes[0].failures != 1 {
			t.Fatalf("failures = %d, want 1 so that Run retries with backoff", e.remotes[0].failures)
		}
		e.pollOnce(context.Background(), e.remotes[0])
		if got := evalReason(t, e); got != "B" {
			t.Fatalf("serving %q after recovery", got)
		}
		if src := e.Status().Sources[0]; src.ActivatedFrom != FromDownload || src.LastError != "" || !src.Persisted {
			t.Fatalf("source status after recovery = %+v", src)
		}
		// Restore A for the next subtests.
		if err := writeFileAtomic(file, bundleA); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("download does not compile: start from the persisted bundle", func(t *testing.T) {
		broken := newBundleServer(t)
		broken.set(signedRego(t, k, "", "B", "package mcpauthz\ndecision := nope\n", nil), `"bad"`)
		e := newEngine(t, cfgFor(broken.bundleURL(), dir))
		if got := evalReason(t, e); got != "A" {
			t.Fatalf("serving %q", got)
		}
		if src := e.Status().Sources[0]; src.ActivatedFrom != FromPersisted || !strings.Contains(src.LastError, "rego_unsafe_var_error") {
			t.Fatalf("source status = %+v", src)
		}
	})
	t.Run("tampered persisted bundle is not used", func(t *testing.T) {
		tdir := t.TempDir()
		tampered := signedBundle(t, k, "", "A", func(b *bundle.Bundle) { b.Modules[0].Raw = []byte(policyAB("B")["policy.rego"]) })
		if err := os.WriteFile(filepath.Join(tdir, "mcp.tar.gz"), tampered, 0o600); err != nil {
			t.Fatal(err)
		}
		down := newBundleServer(t)
		down.fail(http.StatusServiceUnavailable)
		_, err := New(context.Background(), cfgFor(down.bundleURL(), tdir), nil)
		if err == nil || !strings.Contains(err.Error(), "no persisted copy") || !strings.Contains(err.Error(), "digest mismatch") {
			t.Fatalf("New err = %v", err)
		}
	})
	t.Run("server down and nothing persisted: New fails", func(t *testing.T) {
		down := newBundleServer(t)
		down.fail(http.StatusBadGateway)
		_, err := New(context.Background(), cfgFor(down.bundleURL(), t.TempDir()), nil)
		if err == nil || !strings.Contains(err.Error(), "policy: bundle mcp: no bundle within startup_timeout 300ms and no persisted copy") ||
			!strings.Contains(err.Error(), "unexpected status 502") {
			t.Fatalf("New err = %v", err)
		}
		if down.requests.Load() < 1 {
			t.Fatal("no download attempted")
		}
	})
}

func TestRemoteCredentialsNeverLeak(t *testing.T) {
	const token = "s3cr3t-bundle-token-9f8e"
	const presigned = "X-Amz-Signature=deadbeefsig"
	t.Setenv("MCPAUTHZ_TEST_BUNDLE_TOKEN", token)
	srv := newBundleServer(t)
	srv.set(tarGz(t, policyAB("A")), `"a"`)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := remoteConfig(srv.bundleURL()+"?"+presigned, func(b *BundleSource) {
		b.Credentials = &BundleCredentials{Bearer: &BearerCredentials{Token: secret.Ref{Env: "MCPAUTHZ_TEST_BUNDLE_TOKEN"}}}
	})
	e, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.lastHeader("Authorization"); got != "Bearer "+token {
		t.Fatalf("Authorization = %q", got)
	}
	srv.fail(http.StatusUnauthorized)
	e.pollOnce(context.Background(), e.remotes[0])
	srv.set([]byte("garbage"), `"g"`)
	e.pollOnce(context.Background(), e.remotes[0])
	t.Setenv("MCPAUTHZ_TEST_BUNDLE_TOKEN", "")
	e.pollOnce(context.Background(), e.remotes[0]) // credentials error
	st := e.Status()
	if !strings.Contains(st.LastError, `env var "MCPAUTHZ_TEST_BUNDLE_TOKEN" is empty`) || st.Sources[0].URL != srv.bundleURL()+"?..." {
		t.Fatalf("status = %+v", st)
	}
	for what, text := range map[string]string{
		"status": fmt.Sprintf("%+v %#v", st, st), "logs": logs.String(), "config": fmt.Sprintf("%+v %#v", cfg, cfg),
	} {
		if strings.Contains(text, token) || strings.Contains(text, "deadbeefsig") {
			t.Errorf("%s leaks a secret: %s", what, text)
		}
	}
	if !strings.Contains(logs.String(), "unexpected status 401") {
		t.Errorf("logs lack the failure: %s", logs.String())
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestRemoteRedirects(t *testing.T) {
	target := newBundleServer(t)
	target.set(tarGz(t, policyAB("A")), `"a"`)
	mux := http.NewServeMux()
	mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/bundles/mcp.tar.gz", http.StatusFound)
	})
	mux.HandleFunc("/other", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.bundleURL(), http.StatusFound)
	})
	mux.HandleFunc("/bundles/mcp.tar.gz", target.serve)
	origin := httptest.NewServer(mux)
	defer origin.Close()

	e := newEngine(t, remoteConfig(origin.URL+"/same", func(b *BundleSource) { b.Name = "mcp" }))
	if got := evalReason(t, e); got != "A" {
		t.Fatalf("same-origin redirect: serving %q", got)
	}
	before := target.requests.Load()
	_, err := New(context.Background(), remoteConfig(origin.URL+"/other", func(b *BundleSource) { b.Name = "mcp" }), nil)
	if err == nil || !strings.Contains(err.Error(), "redirect to another origin") {
		t.Fatalf("cross-origin redirect: err = %v", err)
	}
	// target.serve ran only for the same-origin path on origin's mux; the
	// other server was never contacted directly.
	if target.requests.Load() != before {
		t.Fatalf("cross-origin target was contacted")
	}
}

func TestMixedPathAndRemoteSources(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		".manifest": `{"revision":"local-1","roots":["shared"]}`,
		"data.json": `{"shared": {"why": "from-path"}}`,
	})
	srv := newBundleServer(t)
	srv.set(tarGz(t, map[string]string{
		".manifest":   `{"revision":"remote-1","roots":["mcpauthz"]}`,
		"policy.rego": "package mcpauthz\ndecision := {\"allow\": true, \"reason\": data.shared.why}\n",
	}), `"r1"`)
	e := newEngine(t, Config{Bundles: []BundleSource{
		{Path: dir, Name: "local"},
		{URL: srv.bundleURL(), Polling: Polling{MinDelay: time.Second, MaxDelay: 2 * time.Second}},
	}})
	if got := evalReason(t, e); got != "from-path" {
		t.Fatalf("serving %q", got)
	}
	st := e.Status()
	if st.Revision != "local-1,remote-1" || len(st.Sources) != 2 || st.Sources[0].Revision != "local-1" || st.Sources[1].Revision != "remote-1" {
		t.Fatalf("status = %+v", st)
	}
	// A path reload keeps the downloaded bundle; a path error shows up.
	writeFiles(t, dir, map[string]string{"data.json": `{"shared": {"why": "edited"}}`})
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := evalReason(t, e); got != "edited" {
		t.Fatalf("serving %q", got)
	}
	if srv.requests.Load() != 1 {
		t.Fatalf("Reload downloaded: %d requests", srv.requests.Load())
	}
}

func TestRunPollsRemote(t *testing.T) {
	srv := newBundleServer(t)
	srv.set(tarGz(t, policyAB("A")), `"a"`)
	e := newEngine(t, remoteConfig(srv.bundleURL(), func(b *BundleSource) { b.Polling = Polling{MinDelay: time.Second, MaxDelay: time.Second} }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	srv.set(tarGz(t, policyAB("B")), `"b"`)
	waitFor(t, "Run to activate B", func() bool { return e.Status().Revision == "B" })
	cancel()
	<-done
}

// TestRemoteSwapUnderLoad: evaluations run continuously while the bundle
// server switches from A (allow) to B (deny). Every result is exactly A's or
// B's, and once the swap is visible, never A's again.
func TestRemoteSwapUnderLoad(t *testing.T) {
	in := toolCall("human", []any{"viewer"}, []string{"docs:read"}, "x")
	ctx := context.Background()
	want := map[string]Decision{}
	for _, v := range []string{"A", "B"} {
		p := filepath.Join(t.TempDir(), v+".tar.gz")
		if err := os.WriteFile(p, tarGz(t, policyAB(v)), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := newEngine(t, Config{Bundles: []BundleSource{{Path: p}}}).Evaluate(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		want[v] = d
	}
	if !want["A"].Allow || want["B"].Allow || want["A"].Revision != "A" || want["B"].Revision != "B" {
		t.Fatalf("reference decisions: %+v", want)
	}

	srv := newBundleServer(t)
	srv.set(tarGz(t, policyAB("A")), `"a"`)
	e := newEngine(t, remoteConfig(srv.bundleURL(), nil))

	const workers = 4
	var (
		evals    atomic.Int64
		swapped  atomic.Bool // set after pollOnce returned
		stop     atomic.Bool
		wg       sync.WaitGroup
		failures = make(chan string, workers)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sawB := false
			for !stop.Load() {
				after := swapped.Load()
				d, err := e.Evaluate(ctx, in)
				evals.Add(1)
				var got string
				switch {
				case err != nil:
					failures <- fmt.Sprintf("Evaluate: %v", err)
					return
				case reflect.DeepEqual(d, want["A"]):
					got = "A"
				case reflect.DeepEqual(d, want["B"]):
					got = "B"
				default:
					failures <- fmt.Sprintf("decision is neither A nor B: %+v", d)
					return
				}
				if got == "A" && (sawB || after) {
					failures <- fmt.Sprintf("A after the swap (sawB=%v, after pollOnce=%v)", sawB, after)
					return
				}
				sawB = sawB || got == "B"
			}
		}()
	}
	waitEvals := func(n int64) {
		for target := evals.Load() + n; evals.Load() < target && len(failures) == 0; {
			runtime.Gosched()
		}
	}
	waitEvals(200)
	srv.set(tarGz(t, policyAB("B")), `"b"`)
	e.pollOnce(ctx, e.remotes[0])
	swapped.Store(true)
	waitEvals(200)
	stop.Store(true)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	if st := e.Status(); st.Revision != "B" || st.Loads != 2 {
		t.Fatalf("status = %+v", st)
	}
}

func TestKeySourceYAML(t *testing.T) {
	tests := []struct {
		name, doc string
		want      KeySource
		err       string
	}{
		{"inline", "public_key: |\n  -----BEGIN PUBLIC KEY-----\n  abc\n", KeySource{PEM: "-----BEGIN PUBLIC KEY-----\nabc\n"}, ""},
		{"file", "public_key: {file: /etc/keys/k.pem}", KeySource{File: "/etc/keys/k.pem"}, ""},
		{"other key", "public_key: {env: X}", KeySource{}, "exactly {file: PATH}"},
		{"number", "public_key: 3", KeySource{}, "inline PEM text or {file: PATH}"},
		{"list", "public_key: [a]", KeySource{}, "inline PEM text or {file: PATH}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v struct {
				PublicKey KeySource `yaml:"public_key"`
			}
			err := yaml.Unmarshal([]byte(tc.doc), &v)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || v.PublicKey != tc.want {
				t.Fatalf("got %+v, err %v", v.PublicKey, err)
			}
		})
	}
}
