package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/mcpauthz/mcpauthz/e2e/docserver"
)

// bundleHost is an OPA-compatible bundle server (ETag, 304) whose bundle
// can be replaced while mcpauthz polls it.
type bundleHost struct {
	mu   sync.Mutex
	body []byte
	etag string
	hits atomic.Int64
}

func (b *bundleHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	b.mu.Lock()
	body, etag := b.body, b.etag
	b.mu.Unlock()
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(body)
}

func (b *bundleHost) set(body []byte, etag string) {
	b.mu.Lock()
	b.body, b.etag = body, etag
	b.mu.Unlock()
}

// signedRBAC builds the example RBAC bundle with revision rev, the viewer
// role's tools replaced by viewerTools, signed with key as `opa build
// --signing-key` does. tamper, if set, alters the bundle after signing.
func signedRBAC(t *testing.T, key string, rev string, viewerTools []string, tamper func(*bundle.Bundle)) []byte {
	t.Helper()
	src, err := os.ReadFile("../bundles/rbac/policy.rego")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../bundles/rbac/data.json")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	rbac := data["mcpauthz"].(map[string]any)["rbac"].(map[string]any)
	rbac["roles"].(map[string]any)["viewer"] = viewerTools
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: rev, Roots: &[]string{"mcpauthz"}},
		Data:     data,
		Modules:  []bundle.ModuleFile{{URL: "/policy.rego", Path: "/policy.rego", Raw: src}},
	}
	if err := b.GenerateSignature(bundle.NewSigningConfig(key, "ES256", ""), "release", false); err != nil {
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

// TestBundleServerSwapUnderLoad: mcpauthz takes its policy from a signed
// bundle on a bundle server. While clients keep calling, the server swaps
// revision A (viewers may read) for B (viewers may not). No call fails for
// any other reason, every decision is A's or B's whole answer, no client
// sees A again once it saw B, and the decision log ties each answer to its
// revision. Then a tampered bundle is refused and B keeps serving.
func TestBundleServerSwapUnderLoad(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(priv)
	pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	pubFile := t.TempDir() + "/bundle-signing.pem"
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		t.Fatal(err)
	}

	host := &bundleHost{}
	all := []string{"readDocument"}
	host.set(signedRBAC(t, privPEM, "A", all, nil), `"A"`)
	bs := httptest.NewServer(host)
	t.Cleanup(bs.Close)

	e := newEnvWith(t, envOptions{policy: fmt.Sprintf(`  persist_dir: %s
  bundles:
    - name: mcp
      url: %s/bundles/mcp.tar.gz
      polling: {min_delay: 1s, max_delay: 1s}
      persist: true
      signing:
        keys: [{id: release, algorithm: ES256, public_key: {file: %s}}]`, t.TempDir(), bs.URL, pubFile)})

	viewer := e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}})
	call := func(ctx context.Context) (int, string, error) {
		status, _, body, err := docserver.PostJSONRPC(ctx, http.DefaultClient, e.endpoint, map[string]string{
			"Authorization": "Bearer " + viewer, "Mcp-Protocol-Version": "2025-06-18",
		}, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-seed"}}}`))
		return status, string(body), err
	}
	e.upstream.Put(docserver.Document{ID: "doc-seed", Title: "seed", Content: "v0"})
	if status, body, err := call(ctxT(t)); err != nil || status != http.StatusOK {
		t.Fatalf("revision A should allow the viewer: %d %s %v", status, body, err)
	}

	ctx, stop := context.WithCancel(ctxT(t))
	var (
		wg                      sync.WaitGroup
		allowed, denied, broken atomic.Int64
		regressions             atomic.Int64
	)
	for range 8 {
		wg.Go(func() {
			sawB := false
			for ctx.Err() == nil {
				status, body, err := call(ctx)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					broken.Add(1)
				case status == http.StatusOK:
					allowed.Add(1)
					if sawB {
						regressions.Add(1)
					}
				case status == http.StatusForbidden && strings.Contains(body, "role viewer may not call readDocument"):
					denied.Add(1)
					sawB = true
				default:
					broken.Add(1)
					t.Errorf("neither A's nor B's answer: %d %s", status, body)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	host.set(signedRBAC(t, privPEM, "B", []string{}, nil), `"B"`)
	deadline := time.Now().Add(15 * time.Second)
	for denied.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // keep the load on after the swap
	stop()
	wg.Wait()
	t.Logf("during the swap: %d allowed (A), %d denied (B), %d broken", allowed.Load(), denied.Load(), broken.Load())
	if denied.Load() == 0 {
		t.Fatal("revision B never took effect")
	}
	if broken.Load() != 0 || regressions.Load() != 0 {
		t.Fatalf("%d calls failed otherwise, %d saw A after B", broken.Load(), regressions.Load())
	}
	if status, _, _ := call(ctxT(t)); status != http.StatusForbidden {
		t.Fatalf("after the swap: %d, want B's 403", status)
	}

	// A tampered bundle is refused; B keeps serving.
	host.set(signedRBAC(t, privPEM, "C", all, func(b *bundle.Bundle) {
		b.Data["mcpauthz"].(map[string]any)["rbac"].(map[string]any)["roles"].(map[string]any)["viewer"] = all
		b.Modules[0].Raw = append(b.Modules[0].Raw, []byte("\n# tampered\n")...)
	}), `"C"`)
	deadline = time.Now().Add(15 * time.Second)
	var ready struct {
		Policy struct {
			Revision string `json:"revision"`
			Sources  []struct {
				Revision  string `json:"revision"`
				LastError string `json:"last_error"`
			} `json:"sources"`
		} `json:"policy"`
	}
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + e.srv.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&ready)
		resp.Body.Close()
		if len(ready.Policy.Sources) == 1 && ready.Policy.Sources[0].LastError != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	src := ready.Policy.Sources
	if len(src) != 1 || !strings.Contains(src[0].LastError, "signature") || src[0].Revision != "B" || ready.Policy.Revision != "B" {
		t.Fatalf("tampered bundle: readyz policy = %+v", ready.Policy)
	}
	if status, _, _ := call(ctxT(t)); status != http.StatusForbidden {
		t.Fatalf("after the tampered bundle: %d, want B's 403 (B keeps serving)", status)
	}

	// The decision log ties every answer to the revision that gave it.
	_ = e.srv.Shutdown(context.Background())
	raw, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	var seen = map[string]int{}
	for line := range strings.Lines(string(raw)) {
		var rec struct {
			Tool     string `json:"tool"`
			Allow    bool   `json:"allow"`
			Revision string `json:"bundle_revision"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Tool != "readDocument" {
			continue
		}
		if rec.Allow != (rec.Revision == "A") {
			t.Fatalf("decision allow=%v under revision %q", rec.Allow, rec.Revision)
		}
		seen[rec.Revision]++
	}
	if seen["A"] == 0 || seen["B"] == 0 || seen["C"] != 0 {
		t.Fatalf("decisions by revision: %v", seen)
	}
}
