package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mcpauthz/mcpauthz/policy"
)

// slowPolicy allows after a delay, so a Check is in flight during shutdown.
type slowPolicy struct {
	started chan struct{}
	delay   time.Duration
	calls   atomic.Int32
}

func (p *slowPolicy) Evaluate(ctx context.Context, _ *policy.Input) (policy.Decision, error) {
	if p.calls.Add(1) == 1 {
		close(p.started)
	}
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		return policy.Decision{}, ctx.Err()
	}
	return policy.Decision{Allow: true, Reason: "slow", Revision: "slow-1"}, nil
}
func (p *slowPolicy) Status() policy.Status { return policy.Status{Ready: true, Revision: "slow-1"} }

func startServer(t *testing.T, deps Deps) (*Server, *fixture) {
	t.Helper()
	f := newFixture(t)
	if deps.Verifier == nil {
		deps.Verifier = f.svc.verifier
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := New(context.Background(), f.svc.cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(context.Background())
	return srv, f
}

func TestGracefulShutdownFinishesInFlightChecks(t *testing.T) {
	sp := &slowPolicy{started: make(chan struct{}), delay: 300 * time.Millisecond}
	srv, f := startServer(t, Deps{Policy: sp})
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := f.token(t, map[string]any{"sub": "a", "scope": "docs:read"})
	type result struct {
		resp *authv3.CheckResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), req{body: toolCall("readDocument"), headers: bearer(tok)}.check())
		done <- result{resp, err}
	}()
	<-sp.started
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("in-flight Check failed during shutdown: %v", r.err)
	}
	if r.resp.GetOkResponse() == nil {
		t.Fatalf("in-flight Check not allowed: %v", r.resp)
	}
	// After shutdown, new Checks are refused at the transport.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, req{body: toolCall("readDocument"), headers: bearer(tok)}.check()); err == nil {
		t.Fatal("Check accepted after shutdown")
	}
}

func TestHTTPEndpoints(t *testing.T) {
	srv, f := startServer(t, Deps{})
	defer srv.Shutdown(context.Background())
	base := "http://" + srv.HTTPAddr()

	// Produce one allow and one deny so the counters exist.
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read"})
	f2 := &fixture{svc: srv.Service(), idp: f.idp}
	f2.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
	f2.do(t, req{body: toolCall("deleteDocument"), headers: bearer(tok)})

	get := func(path string) (int, http.Header, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if code, _, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	code, _, body := get("/readyz")
	var ready readiness
	if err := json.Unmarshal([]byte(body), &ready); err != nil || code != 200 || !ready.Ready || ready.Policy.Revision != "rbac-1" {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if src := ready.Policy.Sources; len(src) != 1 || src[0].Revision != "rbac-1" || src[0].Path == "" ||
		src[0].ActivatedFrom != "path" || src[0].LastError != "" || src[0].LastSuccess.IsZero() {
		t.Errorf("/readyz sources = %+v", src)
	}
	_, _, metrics := get("/metrics")
	for _, want := range []string{
		`mcpauthz_checks_total{decision="allow",reason="allowed",server="docs",status="200"} 1`,
		`mcpauthz_checks_total{decision="deny",reason="role_not_allowed",server="docs",status="403"} 1`,
		"mcpauthz_check_duration_seconds_bucket", "mcpauthz_token_cache_hit_ratio", "mcpauthz_policy_ready 1",
		"mcpauthz_decision_log_dropped_total 0",
		`mcpauthz_policy_source_ok{activated_from="path",source=`,
		"mcpauthz_policy_source_last_success_timestamp_seconds{source=",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, tok) {
		t.Error("/metrics contains a token")
	}
	code, hdr, body := get("/.well-known/oauth-protected-resource/docs/mcp")
	var md protectedResourceMetadata
	if err := json.Unmarshal([]byte(body), &md); err != nil || code != 200 {
		t.Fatalf("metadata = %d %s", code, body)
	}
	if md.Resource != docsResource || len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != f.idp.URL() ||
		strings.Join(md.ScopesSupported, " ") != "docs:read docs:write docs:admin" || md.BearerMethodsSupported[0] != "header" {
		t.Errorf("metadata = %+v", md)
	}
	if hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Error("metadata is not CORS-readable")
	}
	if code, _, _ := get("/.well-known/oauth-protected-resource/nope"); code != 404 {
		t.Errorf("unknown metadata path = %d", code)
	}

	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc health = %v %v", hr, err)
	}
}

// TestReadyzReportsPolicyNotReady: /readyz is 503 while no policy serves.
func TestReadyzReportsPolicyNotReady(t *testing.T) {
	srv, _ := startServer(t, Deps{Policy: notReadyPolicy{}})
	defer srv.Shutdown(context.Background())
	resp, err := http.Get("http://" + srv.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "p.rego:3") {
		t.Fatalf("/readyz = %d %s", resp.StatusCode, b)
	}
}

type notReadyPolicy struct{ failingPolicy }

func (notReadyPolicy) Status() policy.Status {
	return policy.Status{Ready: false, LastError: "p.rego:3: rego_parse_error", Failures: 1}
}

// TestMetricsCardinalityBounded: free-text reasons from a policy cannot
// grow the metric series without bound.
func TestMetricsCardinalityBounded(t *testing.T) {
	m := &metrics{}
	m.checks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"decision", "reason", "status", "server"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h"}, []string{"decision", "reason"})
	for i := range maxSeries + 100 {
		m.observe(&record{Reason: fmt.Sprintf("free text %d", i), Server: "docs", Status: 403})
	}
	if n := testutil.CollectAndCount(m.checks); n != maxSeries+1 {
		t.Fatalf("series = %d, want %d (the bound plus \"other\")", n, maxSeries+1)
	}
	if got := testutil.ToFloat64(m.checks.WithLabelValues("deny", "other", "403", "docs")); got != 100 {
		t.Fatalf("other = %v, want 100", got)
	}
}
