package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// writeFiles writes files (relative path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Write to a temp file and rename, as deploy tools do, so readers
		// never observe a half-written file.
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

// readDir returns the bundle files of dir (relative path -> content).
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// writeTarball writes files as a gzipped tar in the layout of `opa build`.
func writeTarball(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "/" + name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	e, err := New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// toolCall is a realistic tools/call input.
func toolCall(kind string, roles []any, scopes []string, tool string) *Input {
	return &Input{
		Version: InputVersion,
		Request: Request{
			ID: "req-7f3a", Time: time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC),
			Method: "POST", Scheme: "https", Host: "docs.example.com", Path: "/mcp",
			Headers: map[string]string{
				"content-type":         "application/json",
				"mcp-protocol-version": "2025-06-18",
				"user-agent":           "claude-code/1.0",
			},
			SourcePrincipal: "spiffe://example.com/ns/edge/sa/envoy",
		},
		MCP: MCP{
			ProtocolVersion: "2025-06-18", Transport: "streamable-http", SessionID: "sess-1",
			Kind: "request", Method: "tools/call", Tool: tool,
			Arguments: json.RawMessage(`{"id":"doc-42","title":"Q3 plan","tags":["plan","q3"]}`),
		},
		Principal: Principal{
			Authenticated: true, Kind: kind, Subject: "user-123", UserID: "u123", UserKey: "iss|user-123",
			Org: "acme", Issuer: "https://idp.example.com", ClientID: "claude",
			Scopes: scopes, Method: "jwt",
			Claims: map[string]any{
				"roles": roles,
				"email": "alice@example.com",
				"aud":   "https://docs.example.com/mcp",
				"exp":   json.Number("1750000000"),
			},
		},
		Server: Server{
			ID: "docs", Resource: "https://docs.example.com/mcp",
			Scopes:         []string{"docs:read", "docs:write", "docs:admin"},
			CredentialMode: "delegated", Labels: map[string]string{"team": "docs"},
		},
	}
}

func TestLoadDirectoryAndTarball(t *testing.T) {
	files := readDir(t, rbacBundle)
	tmp := t.TempDir()
	tarPath := filepath.Join(tmp, "rbac.tar.gz")
	writeTarball(t, tarPath, files)
	dirCopy := filepath.Join(tmp, "dir")
	writeFiles(t, dirCopy, files)

	tests := []struct {
		name, path string
	}{
		{"directory", rbacBundle},
		{"directory copy", dirCopy},
		{"tarball", tarPath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: tc.path}}})
			ctx := context.Background()
			d, err := e.Evaluate(ctx, toolCall("human", []any{"viewer"}, []string{"docs:read"}, "readDocument"))
			if err != nil {
				t.Fatal(err)
			}
			want := Decision{Allow: true, Reason: "allowed", HTTPStatus: 200, RequiredScopes: []string{"docs:read"}, Scopes: []string{"docs:read"}, Revision: "rbac-1"}
			if !reflect.DeepEqual(d, want) {
				t.Fatalf("decision = %+v, want %+v", d, want)
			}
			d, err = e.Evaluate(ctx, toolCall("human", []any{"viewer"}, []string{"docs:read", "docs:admin"}, "deleteDocument"))
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow || d.Reason != "role_not_allowed" || d.HTTPStatus != 403 || d.Message != "role viewer may not call deleteDocument" {
				t.Fatalf("delete as viewer = %+v, want role_not_allowed/403", d)
			}
			st := e.Status()
			if !st.Ready || st.Revision != "rbac-1" || st.Loads != 1 || st.Failures != 0 || st.LastError != "" {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

func TestRevisionWithoutManifestIsContentHash(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": "package mcpauthz\ndecision := input.mcp.arguments.id == \"doc-42\"\n"})
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
	rev := e.Status().Revision
	if !strings.HasPrefix(rev, "sha256:") || len(rev) != len("sha256:")+12 {
		t.Fatalf("revision = %q, want sha256:<12 hex>", rev)
	}
	writeFiles(t, dir, map[string]string{"p.rego": "package mcpauthz\ndecision := false\n"})
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.Status().Revision; got == rev || !strings.HasPrefix(got, "sha256:") {
		t.Fatalf("revision after change = %q (before %q)", got, rev)
	}
}

func TestMultipleBundles(t *testing.T) {
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	writeFiles(t, a, map[string]string{
		".manifest": `{"revision":"a-1","roots":["mcpauthz"]}`,
		"p.rego":    "package mcpauthz\ndecision := {\"allow\": data.shared.ok, \"reason\": data.shared.why}\n",
	})
	writeFiles(t, b, map[string]string{
		".manifest":        `{"revision":"b-7","roots":["shared"]}`,
		"shared/data.json": `{"ok": true, "why": "from b"}`,
	})
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: a}, {Path: b}}})
	d, err := e.Evaluate(context.Background(), &Input{})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || d.Reason != "from b" || d.Revision != "a-1,b-7" {
		t.Fatalf("decision = %+v", d)
	}

	// Overlapping roots are rejected.
	c := filepath.Join(tmp, "c")
	writeFiles(t, c, map[string]string{".manifest": `{"roots":["shared/x"]}`, "shared/x/data.json": `{}`})
	_, err = New(context.Background(), Config{Bundles: []BundleSource{{Path: b}, {Path: c}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("overlapping roots: err = %v, want overlap error", err)
	}
}

func TestDecisionShapes(t *testing.T) {
	envoyFiles := readDir(t, "testdata/envoy")
	tests := []struct {
		name    string
		files   map[string]string
		query   string
		input   *Input
		want    Decision
		wantErr error
	}{
		{
			name:  "boolean true",
			files: map[string]string{"p.rego": "package mcpauthz\ndecision := true\n"},
			want:  Decision{Allow: true},
		},
		{
			name:  "boolean false",
			files: map[string]string{"p.rego": "package mcpauthz\ndecision := false\n"},
			want:  Decision{Allow: false, Reason: ReasonDenied},
		},
		{
			name: "full object",
			files: map[string]string{"p.rego": `package mcpauthz
decision := {
	"allow": true, "allowed": true, "reason": "ok", "message": "fine", "http_status": 200,
	"headers": {"x-user": input.principal.subject}, "body": "",
	"request_headers_to_remove": ["authorization"],
	"response_headers_to_add": {"x-trace": "1"},
	"required_scopes": {"b", "a"}, "scopes": ["docs:read"], "credential": "delegated",
	"extra": {"ignored": [1, 2]},
}
`},
			input: &Input{Principal: Principal{Subject: "alice"}},
			want: Decision{
				Allow: true, Reason: "ok", Message: "fine", HTTPStatus: 200,
				Headers: map[string]string{"x-user": "alice"}, RequestHeadersToRemove: []string{"authorization"},
				ResponseHeadersToAdd: map[string]string{"x-trace": "1"}, RequiredScopes: []string{"a", "b"},
				Scopes: []string{"docs:read"}, Credential: "delegated",
			},
		},
		{
			name:  "deny object without reason",
			files: map[string]string{"p.rego": "package mcpauthz\ndecision := {\"allow\": false, \"http_status\": 429}\n"},
			want:  Decision{Reason: ReasonDenied, HTTPStatus: 429},
		},
		{
			name:  "opa-envoy policy allow",
			files: envoyFiles, query: "data.envoy.authz.allow",
			input: &Input{Principal: Principal{Subject: "alice"}},
			want: Decision{
				Allow: true, Headers: map[string]string{"x-ext-auth-allow": "yes", "x-current-user": "alice"},
				RequestHeadersToRemove: []string{"authorization", "x-user"},
				ResponseHeadersToAdd:   map[string]string{"x-policy": "envoy"},
			},
		},
		{
			name:  "opa-envoy policy deny",
			files: envoyFiles, query: "data.envoy.authz.allow",
			input: &Input{Principal: Principal{Subject: "mallory"}},
			want: Decision{
				Reason: ReasonDenied, HTTPStatus: 403, Body: "Unauthorized Request",
				Headers: map[string]string{"x-ext-auth-allow": "no"},
			},
		},
		{
			name:  "undefined rule",
			files: map[string]string{"p.rego": "package mcpauthz\ndecision := true if input.never\n"},
			want:  Decision{Reason: ReasonUndefined},
		},
		{
			name:  "undefined package",
			files: map[string]string{"p.rego": "package other\nx := 1\n"},
			want:  Decision{Reason: ReasonUndefined},
		},
		{name: "number result", files: policyReturning(`42`), wantErr: ErrBadDecision},
		{name: "string result", files: policyReturning(`"allow"`), wantErr: ErrBadDecision},
		{name: "no allow key", files: policyReturning(`{"reason": "x"}`), wantErr: ErrBadDecision},
		{name: "allow not bool", files: policyReturning(`{"allow": "yes"}`), wantErr: ErrBadDecision},
		{name: "allowed not bool", files: policyReturning(`{"allowed": 1}`), wantErr: ErrBadDecision},
		{name: "allow and allowed disagree", files: policyReturning(`{"allow": true, "allowed": false}`), wantErr: ErrBadDecision},
		{name: "headers not strings", files: policyReturning(`{"allow": true, "headers": {"a": 1}}`), wantErr: ErrBadDecision},
		{name: "headers array", files: policyReturning(`{"allow": true, "headers": ["a"]}`), wantErr: ErrBadDecision},
		{name: "status string", files: policyReturning(`{"allow": false, "http_status": "403"}`), wantErr: ErrBadDecision},
		{name: "status out of range", files: policyReturning(`{"allow": false, "http_status": 42}`), wantErr: ErrBadDecision},
		{name: "status fractional", files: policyReturning(`{"allow": false, "http_status": 403.5}`), wantErr: ErrBadDecision},
		{name: "scopes string", files: policyReturning(`{"allow": true, "scopes": "docs:read"}`), wantErr: ErrBadDecision},
		{name: "scopes mixed", files: policyReturning(`{"allow": true, "scopes": ["a", 1]}`), wantErr: ErrBadDecision},
		{name: "reason number", files: policyReturning(`{"allow": false, "reason": 7}`), wantErr: ErrBadDecision},
		{name: "credential bool", files: policyReturning(`{"allow": true, "credential": true}`), wantErr: ErrBadDecision},
		{name: "body object", files: policyReturning(`{"allow": false, "body": {}}`), wantErr: ErrBadDecision},
		{name: "remove not array", files: policyReturning(`{"allow": true, "request_headers_to_remove": "x"}`), wantErr: ErrBadDecision},
		{name: "response headers not strings", files: policyReturning(`{"allow": true, "response_headers_to_add": {"a": null}}`), wantErr: ErrBadDecision},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, Query: tc.query})
			in := tc.input
			if in == nil {
				in = &Input{}
			}
			d, err := e.Evaluate(context.Background(), in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v (decision %+v)", err, tc.wantErr, d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Revision = e.Status().Revision
			if !reflect.DeepEqual(d, tc.want) {
				t.Fatalf("decision =\n%+v\nwant\n%+v", d, tc.want)
			}
		})
	}
}

func policyReturning(v string) map[string]string {
	return map[string]string{"p.rego": "package mcpauthz\ndecision := " + v + "\n"}
}

func TestNewFailsOnBrokenBundle(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"syntax error", map[string]string{"p.rego": "package mcpauthz\ndecision := {\n"}, "p.rego:"},
		{"compile error", map[string]string{"p.rego": "package mcpauthz\ndecision := nope\n"}, "p.rego:2"},
		{"bad data", map[string]string{"p.rego": "package mcpauthz\ndecision := true\n", "data.json": "{"}, "data.json"},
		{"roots violated", map[string]string{".manifest": `{"roots":["x"]}`, "p.rego": "package mcpauthz\ndecision := true\n"}, "roots"},
		{"missing", nil, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			if tc.files != nil {
				writeFiles(t, dir, tc.files)
			}
			_, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: dir}}}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	t.Run("not a tarball", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "b.tar.gz")
		if err := os.WriteFile(p, []byte("not gzip"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := New(context.Background(), Config{Bundles: []BundleSource{{Path: p}}}, nil)
		if err == nil || !strings.Contains(err.Error(), "b.tar.gz") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		_, err := New(context.Background(), Config{}, nil)
		if err == nil || !strings.Contains(err.Error(), "bundles:") {
			t.Fatalf("err = %v", err)
		}
	})
}

// versioned returns a bundle whose reason, scopes and revision all name v.
func versioned(v string) map[string]string {
	return map[string]string{
		".manifest": fmt.Sprintf(`{"revision":%q,"roots":["mcpauthz"]}`, v),
		"p.rego": fmt.Sprintf(`package mcpauthz
decision := {"allow": true, "reason": %q, "scopes": [data.mcpauthz.v]}
`, v),
		"mcpauthz/data.json": fmt.Sprintf(`{"v": %q}`, v),
	}
}

func evalReason(t *testing.T, e *Engine) string {
	t.Helper()
	d, err := e.Evaluate(context.Background(), &Input{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Reason
}

func TestBrokenReloadKeepsServing(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"syntax error", map[string]string{"p.rego": "package mcpauthz\n\ndecision := {{\n"}, "p.rego:4: rego_parse_error"},
		{"compile error", map[string]string{"p.rego": "package mcpauthz\ndecision := {\"allow\": true}\nx := y\n"}, "p.rego:3"},
		{"bad data", map[string]string{"mcpauthz/data.json": `{"v": `}, "data.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, versioned("v1"))
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
			writeFiles(t, dir, tc.files)
			err := e.Reload(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload err = %v, want it to contain %q", err, tc.want)
			}
			if got := evalReason(t, e); got != "v1" {
				t.Fatalf("serving %q after broken reload, want v1", got)
			}
			st := e.Status()
			if !st.Ready || st.Revision != "v1" || st.Failures != 1 || st.Loads != 1 ||
				!strings.Contains(st.LastError, tc.want) || st.LastAttempt.Before(st.LastLoad) {
				t.Fatalf("status = %+v", st)
			}
			// Fixing the bundle clears the error.
			writeFiles(t, dir, versioned("v2"))
			if err := e.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := e.Status(); st.LastError != "" || st.Revision != "v2" || st.Loads != 2 || st.Failures != 1 {
				t.Fatalf("status after fix = %+v", st)
			}
		})
	}
}

func TestUnchangedChecksumDoesNotRecompile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, versioned("v1"))
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
	before := e.snap.Load()
	steps := []struct {
		name         string
		files        map[string]string
		wantCompiles uint64
		wantSame     bool
	}{
		{"no change", nil, 1, true},
		{"rewrite same content", versioned("v1"), 1, true},
		{"irrelevant file", map[string]string{"README.md": "hello", "p_test.rego": "package mcpauthz.t\ntest_x if true\n"}, 1, true},
		{"policy change", versioned("v2"), 2, false},
	}
	for _, s := range steps {
		writeFiles(t, dir, s.files)
		if err := e.Reload(context.Background()); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := e.compiles.Load(); got != s.wantCompiles {
			t.Fatalf("%s: compiles = %d, want %d", s.name, got, s.wantCompiles)
		}
		if same := e.snap.Load() == before; same != s.wantSame {
			t.Fatalf("%s: snapshot reused = %t, want %t", s.name, same, s.wantSame)
		}
	}
	if st := e.Status(); st.Loads != 2 {
		t.Fatalf("Loads = %d, want 2", st.Loads)
	}
}

// waitFor polls cond until it holds or the test deadline budget runs out.
// It is a correctness wait for an asynchronous watcher, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunHotReload(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "dir")
	writeFiles(t, dir, versioned("v1"))
	tarPath := filepath.Join(tmp, "b.tar.gz")
	writeTarball(t, tarPath, versioned("v1"))

	tests := []struct {
		name   string
		path   string
		update func(v string)
	}{
		{"directory", dir, func(v string) { writeFiles(t, dir, versioned(v)) }},
		{"tarball", tarPath, func(v string) {
			tmpTar := filepath.Join(tmp, "new.tar.gz")
			writeTarball(t, tmpTar, versioned(v))
			if err := os.Rename(tmpTar, tarPath); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, Config{Bundles: []BundleSource{{Path: tc.path}}})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); e.Run(ctx) }()
			defer func() { cancel(); <-done }()

			// The watcher may start after the first write; rewrite now and then until seen.
			i := 0
			waitFor(t, "v2 to be served", func() bool {
				if i%50 == 0 {
					tc.update("v2")
				}
				i++
				return evalReason(t, e) == "v2"
			})
			// A broken edit is reported and v2 keeps serving.
			if tc.name == "directory" {
				writeFiles(t, dir, map[string]string{"p.rego": "package mcpauthz\ndecision := {\n"})
				waitFor(t, "the broken edit to be reported", func() bool {
					return strings.Contains(e.Status().LastError, "p.rego")
				})
				if got := evalReason(t, e); got != "v2" {
					t.Fatalf("serving %q, want v2", got)
				}
				tc.update("v3")
				waitFor(t, "v3 to be served", func() bool { return evalReason(t, e) == "v3" })
			}
		})
	}
}

func TestRunPollingFallback(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, versioned("v1"))
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}, PollInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.poll(ctx) }()
	defer func() { cancel(); <-done }()
	writeFiles(t, dir, versioned("v2"))
	waitFor(t, "v2 via polling", func() bool { return evalReason(t, e) == "v2" })
}

// TestConcurrentEvaluateDuringReload checks that every evaluation sees one
// whole policy version: reason, scopes (from data) and revision (from the
// manifest) must always name the same version.
func TestConcurrentEvaluateDuringReload(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, versioned("v0"))
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		evals    atomic.Int64
		versions sync.Map
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				d, err := e.Evaluate(context.Background(), toolCall("human", []any{"viewer"}, nil, "readDocument"))
				if err != nil {
					t.Errorf("Evaluate: %v", err)
					return
				}
				if len(d.Scopes) != 1 || d.Scopes[0] != d.Reason || d.Revision != d.Reason {
					t.Errorf("torn decision: %+v", d)
					return
				}
				versions.Store(d.Reason, true)
				evals.Add(1)
			}
		})
	}
	for i := 1; i <= 20; i++ {
		writeFiles(t, dir, versioned(fmt.Sprintf("v%d", i%2)))
		if err := e.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 { // interleave broken reloads
			writeFiles(t, dir, map[string]string{"p.rego": "package mcpauthz\ndecision := {\n"})
			if err := e.Reload(context.Background()); err == nil {
				t.Fatal("broken reload succeeded")
			}
		}
	}
	waitFor(t, "evaluations to run", func() bool { return evals.Load() > 100 })
	stop.Store(true)
	wg.Wait()
	n := 0
	versions.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		t.Fatal("no versions observed")
	}
}

func TestEvaluateContextCancellation(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"p.rego": `package mcpauthz
decision := {"allow": n > 0} if {
	input.mcp.method == "slow"
	n := count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000)])
} else := true
`})
	e := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})

	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.Evaluate(ctx, &Input{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("cancelled during evaluation", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() {
			_, err := e.Evaluate(ctx, &Input{MCP: MCP{Method: "slow"}})
			res <- err
		}()
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("live context still works", func(t *testing.T) {
		d, err := e.Evaluate(context.Background(), &Input{})
		if err != nil || !d.Allow {
			t.Fatalf("d = %+v, err = %v", d, err)
		}
	})
}

func TestEvaluateNotReadyAndNilInput(t *testing.T) {
	var e Engine
	if _, err := e.Evaluate(context.Background(), &Input{}); !errors.Is(err, ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
	if st := e.Status(); st.Ready {
		t.Fatalf("zero engine Ready")
	}
	e2 := newEngine(t, Config{Bundles: []BundleSource{{Path: rbacBundle}}})
	if _, err := e2.Evaluate(context.Background(), nil); err == nil {
		t.Fatal("nil input accepted")
	}
	// A policy that reads arguments gets them parsed (and rejects bad JSON).
	dir := t.TempDir()
	writeFiles(t, dir, policyReturning(`input.mcp.arguments.id == "doc-42"`))
	e3 := newEngine(t, Config{Bundles: []BundleSource{{Path: dir}}})
	in := toolCall("human", nil, nil, "readDocument")
	if d, err := e3.Evaluate(context.Background(), in); err != nil || !d.Allow {
		t.Fatalf("arguments not visible: d = %+v, err = %v", d, err)
	}
	in.MCP.Arguments = json.RawMessage(`{bad`)
	if _, err := e3.Evaluate(context.Background(), in); err == nil || !strings.Contains(err.Error(), "mcp.arguments") {
		t.Fatalf("bad arguments: err = %v", err)
	}
}

// TestInputDocumentMatchesJSON proves the hand-written AST conversion is the
// JSON encoding of Input (the contract policy authors read).
func TestInputDocumentMatchesJSON(t *testing.T) {
	in := toolCall("agent_for_user", []any{"editor", 3.5, true, nil, map[string]any{"x": []any{"y"}}}, []string{"docs:read"}, "updateDocument")
	in.MCP.Batch, in.MCP.BatchSize = true, 3
	in.Request.Origin = "https://app.example.com"
	in.Server.CredentialModes = []string{"delegated", "passthrough"}
	in.Principal.Actor = &Actor{Subject: "agent-1", ClientID: "claude", Issuer: "https://idp.example.com"}
	in.Principal.Chain = []Actor{{Subject: "agent-1", ClientID: "claude"}, {Subject: "agent-0", Issuer: "https://idp"}}
	in.Principal.SPIFFEID = "spiffe://example.com/agent"

	got, err := in.toValue(allInput)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got.Compare(want) != 0 {
		t.Fatalf("AST input differs from JSON:\n got %v\nwant %v", got, want)
	}
}

func TestInputDocumentEmptyValues(t *testing.T) {
	got, err := (&Input{}).toValue(allInput)
	if err != nil {
		t.Fatal(err)
	}
	// nil maps/slices are empty objects/arrays, absent arguments, actor and
	// claims are null, and a zero time is the empty string.
	want := ast.MustParseTerm(`{
		"version": "",
		"request": {"id": "", "time": "", "method": "", "scheme": "", "host": "", "path": "", "headers": {}, "source_principal": "", "origin": ""},
		"mcp": {"protocol_version": "", "transport": "", "session_id": "", "batch": false, "batch_size": 0, "kind": "", "method": "", "tool": "", "prompt": "", "uri": "", "arguments": null},
		"principal": {"authenticated": false, "kind": "", "subject": "", "user_id": "", "user_key": "", "org": "", "issuer": "", "client_id": "", "scopes": [], "actor": null, "chain": [], "spiffe_id": "", "method": "", "claims": null},
		"server": {"id": "", "resource": "", "scopes": [], "credential_mode": "", "credential_modes": [], "labels": {}},
		"connection": null
	}`).Value
	if got.Compare(want) != 0 {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
