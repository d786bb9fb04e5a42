package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/internal/pgtest"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// The multi-replica deployment (issue 9, "Many replicas"): one PostgreSQL
// (internal/pgtest), three mcpauthz servers started in-process from the
// same config (store: postgres, mcp.session_store: shared; only the
// listen ports differ), one Envoy stand-in per replica, and a round-robin
// load balancer in front of the three stand-ins. A request may name the
// replica it must go through (header replicaHeader, removed by the load
// balancer) so the test can say "through B"; without it the balancer
// takes the next live replica in turn. The connect pages (connections
// public_url) are a reverse proxy to replica A's HTTP listener, so the
// connect flow and the page revocation run on A.

// replicaHeader pins a request to one replica (0, 1 or 2); test-only.
const replicaHeader = "X-E2E-Replica"

var replicaNames = [...]string{"A", "B", "C"}

type replicasEnv struct {
	*indivEnv // upstream, provider, IdP, secrets; its own mcpauthz is never started
	dsn       string
	lb        *roundRobin

	mu       sync.Mutex
	replicas [3]*replica
}

type replica struct {
	srv    *server.Server
	proxy  *emulator.Proxy
	cancel context.CancelFunc
}

// roundRobin is the load balancer in front of the three Envoy stand-ins.
type roundRobin struct {
	next    atomic.Uint64
	mu      sync.Mutex
	proxies [3]http.Handler // nil: replica down
	served  [3]atomic.Int64
}

func (rr *roundRobin) set(i int, h http.Handler) {
	rr.mu.Lock()
	rr.proxies[i] = h
	rr.mu.Unlock()
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	proxies := rr.proxies
	rr.mu.Unlock()
	i := -1
	if v := r.Header.Get(replicaHeader); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= len(proxies) {
			http.Error(w, "bad "+replicaHeader, http.StatusBadRequest)
			return
		}
		i = n
		r.Header.Del(replicaHeader)
	} else {
		for range len(proxies) {
			n := int(rr.next.Add(1)-1) % len(proxies)
			if proxies[n] != nil {
				i = n
				break
			}
		}
	}
	if i < 0 || proxies[i] == nil {
		http.Error(w, "no live replica", http.StatusBadGateway)
		return
	}
	rr.served[i].Add(1)
	proxies[i].ServeHTTP(w, r)
}

// newReplicasEnv starts PostgreSQL, the IdP, the provider, the upstream,
// the load balancer and the connect-pages proxy; startReplica starts each
// mcpauthz.
func newReplicasEnv(t *testing.T) *replicasEnv {
	t.Helper()
	pg := pgtest.Start(t) // skips, saying so, without PostgreSQL
	e := &indivEnv{dir: t.TempDir(), front: &swapHandler{}, logs: &connectLogs{}}
	r := &replicasEnv{indivEnv: e, lb: &roundRobin{}, dsn: pg.NewDatabase(t)}

	// The connect pages' public URL: a reverse proxy to replica A.
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.public = "http://" + pub.Addr().String()
	ps := &httptest.Server{Listener: pub, Config: &http.Server{Handler: e.front}}
	ps.Start()
	t.Cleanup(ps.Close)

	e.idp, err = devidp.New(devidp.Options{Clients: map[string]string{loginClient: loginSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if e.idpURL, err = e.idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.idp.Close)
	e.provider = oauthtest.New(oauthtest.Options{
		Clients:      map[string]string{trackerClient: trackerSecret},
		RedirectURIs: map[string][]string{trackerClient: {e.public + "/connect/callback"}},
		Users:        map[string]string{"alice": "alice", "mallory": "mallory"},
		SlowDelay:    2 * time.Second,
		Scopes:       []string{"issues:read", "issues:write"},
	})
	if e.provURL, err = e.provider.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.provider.Close)
	e.upstream = newTrackerUpstream(e.provider)
	up := httptest.NewServer(e.upstream)
	t.Cleanup(up.Close)
	e.upstreamURL = up.URL

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + front.Addr().String()
	e.endpoint = e.base + "/tracker/mcp"
	fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: r.lb}}
	fs.Start()
	t.Cleanup(fs.Close)

	for name, v := range map[string]string{
		"tracker-secret": trackerSecret, "login-secret": loginSecret,
		"store-k1": "Aq8m6zJ0o7qXc3m1s9bH0x5Vd2kL4tR8wY1uN6pE3fQ=", "pg-dsn": r.dsn,
	} {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.dir, "policy.rego"), []byte(indivPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.audit = filepath.Join(e.dir, "decisions.log")
	t.Cleanup(func() {
		for i := range r.replicas {
			r.stopReplica(i)
		}
	})
	return r
}

// replicaConfig is the config every replica runs; only the listen ports
// differ between replicas.
func (r *replicasEnv) replicaConfig(grpcPort, httpPort int) string {
	e := r.indivEnv
	return fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:%d", http: "127.0.0.1:%d", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      algorithms: [RS256, ES256]
      agent: {client_ids: [%s]}
policy:
  bundles: [{path: %s}]
mcp:
  session_store: shared
audit: {output: %s}
store:
  driver: postgres
  dsn: {file: %s}
  pool_size: 5
  encryption:
    keys: [{id: k1, secret: {file: %s}}]
connections:
  public_url: %s
  refresh_interval: 1s
connect:
  login:
    issuer: dev
    client_id: %s
    client_secret: {file: %s}
  insecure_cookies: true
servers:
  - id: %s
    name: %s
    resource: %s
    credential:
      mode: individual
      individual:
        provider:
          issuer: %s
          client_id: %s
          client_secret: {file: %s}
          scopes: [issues:read]
    credential_options:
      - mode: public
`, grpcPort, httpPort, e.idpURL, agentClient, e.dir, e.audit,
		filepath.Join(e.dir, "pg-dsn"), filepath.Join(e.dir, "store-k1"), e.public,
		loginClient, filepath.Join(e.dir, "login-secret"),
		trackerID, trackerName, e.endpoint,
		e.provURL, trackerClient, filepath.Join(e.dir, "tracker-secret"))
}

// startReplica starts replica i with its own Envoy stand-in behind the
// load balancer; replica 0 (A) also serves the connect pages.
func (r *replicasEnv) startReplica(t *testing.T, i int) {
	t.Helper()
	e := r.indivEnv
	path := filepath.Join(e.dir, "mcpauthz-"+replicaNames[i]+".yaml")
	if err := os.WriteFile(path, []byte(r.replicaConfig(freePort(t), freePort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("replica %s config: %v", replicaNames[i], err)
	}
	e.storeCfg = cfg.Store
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", replicaNames[i])
	srv, err := server.New(ctx, cfg, server.Deps{Logger: logger})
	if err != nil {
		cancel()
		t.Fatalf("replica %s: %v", replicaNames[i], err)
	}
	srv.Start(ctx)
	xp := emulator.MCPExtProc()
	xp.MessageTimeout = 5 * time.Second
	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr: srv.GRPCAddr(),
		Timeout:   5 * time.Second,
		ExtProc:   xp,
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + srv.HTTPAddr(), DisableExtAuthz: true, DisableExtProc: true},
			{Name: trackerID, PathPrefix: "/tracker/", Upstream: e.upstreamURL, ContextExtensions: map[string]string{server.ContextExtensionKey: trackerID},
				RequestHeadersToSet: []envoy.Header{{Name: "accept-encoding", Value: "identity"}}},
		},
	})
	if err != nil {
		cancel()
		_ = srv.Shutdown(context.Background())
		t.Fatal(err)
	}
	if i == 0 {
		target, _ := url.Parse("http://" + srv.HTTPAddr())
		rp := httputil.NewSingleHostReverseProxy(target)
		base := rp.Director
		rp.Director = func(req *http.Request) { host := req.Host; base(req); req.Host = host }
		e.front.set(rp)
	}
	r.mu.Lock()
	r.replicas[i] = &replica{srv: srv, proxy: proxy, cancel: cancel}
	r.mu.Unlock()
	r.lb.set(i, proxy)
}

// stopReplica takes replica i out of the load balancer and shuts it down.
func (r *replicasEnv) stopReplica(i int) {
	r.mu.Lock()
	rep := r.replicas[i]
	r.replicas[i] = nil
	r.mu.Unlock()
	if rep == nil {
		return
	}
	r.lb.set(i, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = rep.srv.Shutdown(ctx)
	_ = rep.proxy.Close()
	rep.cancel()
}

// pinTransport sends every request through one replica (pin >= 0) or
// lets the load balancer choose (pin < 0), and remembers the MCP session id.
type pinTransport struct {
	pin     atomic.Int64
	next    http.RoundTripper
	session atomic.Value // string
}

func (p *pinTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	if n := p.pin.Load(); n >= 0 {
		req.Header.Set(replicaHeader, strconv.FormatInt(n, 10))
	}
	resp, err := p.next.RoundTrip(req)
	if err == nil {
		if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
			p.session.Store(id)
		}
	}
	return resp, err
}

// replicaClient is the official Go SDK client whose requests go through
// the replica pinned in its transport.
type replicaClient struct {
	*mcpClient
	tr *pinTransport
}

func (c *replicaClient) through(i int) *replicaClient { c.tr.pin.Store(int64(i)); return c }

func (r *replicasEnv) replicaClient(t *testing.T, token string, pin int) *replicaClient {
	t.Helper()
	rec := &exchangeRecorder{}
	tr := &pinTransport{next: rec}
	tr.pin.Store(int64(pin))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: r.endpoint, Token: token, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("MCP connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &replicaClient{mcpClient: &mcpClient{Client: c, rec: rec}, tr: tr}
}

// TestReplicasEndToEnd proves issue 9's "many replicas": three mcpauthz
// replicas on one PostgreSQL act as one.
func TestReplicasEndToEnd(t *testing.T) {
	r := newReplicasEnv(t)
	for i := range r.replicas {
		r.startReplica(t, i)
	}
	aliceTok := r.mcpToken(t, map[string]any{"sub": "alice", "name": "alice"})
	malloryTok := r.mcpToken(t, map[string]any{"sub": "mallory", "name": "mallory"})
	aliceUI := personUI{e: r.indivEnv, p: newPerson("alice")}
	wantHeading := "Connected: " + trackerName + " — Status: AUTHORIZED"

	// (a) alice's first call, through A, gets the link; she connects (the
	//     connect pages run on A); her calls then succeed through B and C.
	alice := r.replicaClient(t, aliceTok, 0)
	_, err := alice.whoami(t)
	link := alice.needsAuthorization(t, err).URL
	connect := func(t *testing.T) {
		t.Helper()
		if h := aliceUI.follow(t, link); h != wantHeading {
			t.Fatalf("after following the link alice sees %q, want %q", h, wantHeading)
		}
	}
	connect(t)
	for _, i := range []int{1, 2, 0} {
		if res, err := alice.through(i).whoami(t); err != nil || res.User != "alice" {
			t.Fatalf("alice's call through %s after connecting on A: %+v, %v", replicaNames[i], res, err)
		}
	}
	// Round robin without a pin: every replica serves alice's calls.
	alice.through(-1)
	before := [3]int64{r.lb.served[0].Load(), r.lb.served[1].Load(), r.lb.served[2].Load()}
	for range 6 {
		if res, err := alice.whoami(t); err != nil || res.User != "alice" {
			t.Fatalf("alice's call, round robin: %+v, %v", res, err)
		}
	}
	for i := range r.replicas {
		if r.lb.served[i].Load() == before[i] {
			t.Fatalf("replica %s served none of alice's round-robin calls", replicaNames[i])
		}
	}

	// (c) the session alice bound through A is refused to mallory
	//     through B and C (and A), and still serves alice.
	t.Run("session binding is shared", func(t *testing.T) {
		sid, _ := alice.tr.session.Load().(string)
		if sid == "" {
			t.Fatal("alice's session has no Mcp-Session-Id")
		}
		body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`)
		for _, i := range []int{1, 2, 0} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			status, _, rb, err := docserver.PostJSONRPC(ctx, http.DefaultClient, r.endpoint, map[string]string{
				"Authorization": "Bearer " + malloryTok, "Mcp-Session-Id": sid, replicaHeader: strconv.Itoa(i),
				"Mcp-Protocol-Version": "2025-06-18",
			}, body)
			cancel()
			if err != nil || status != http.StatusForbidden {
				t.Fatalf("mallory with alice's session through %s: HTTP %d %s, %v (want 403)", replicaNames[i], status, rb, err)
			}
			t.Logf("mallory with alice's session through %s: HTTP %d", replicaNames[i], status)
		}
		for _, i := range []int{1, 2} {
			if res, err := alice.through(i).whoami(t); err != nil || res.User != "alice" {
				t.Fatalf("alice's own session through %s after mallory's attempt: %+v, %v", replicaNames[i], res, err)
			}
		}
	})

	// (b) alice revokes on A's page: through B and C her calls get the
	//     link within 2 s. Measured over several revocations.
	t.Run("revocation propagates", func(t *testing.T) {
		reps := 20
		if testing.Short() {
			reps = 3
		}
		var times []time.Duration
		for rep := range reps {
			if rep > 0 {
				connect(t)
				// Both B and C use the connection again (their local caches
				// hold it) before the next revocation.
				for _, i := range []int{1, 2} {
					waitFor(t, "alice's call through "+replicaNames[i]+" to succeed", func() bool {
						res, err := alice.through(i).whoami(t)
						return err == nil && res.User == "alice"
					})
				}
			}
			t0 := time.Now()
			if card := aliceUI.revoke(t); !strings.Contains(card, "Status: REVOKED") {
				t.Fatalf("alice's card after revoking on A: %q", card)
			}
			var seen [3]time.Duration
			for time.Since(t0) < 10*time.Second && (seen[1] == 0 || seen[2] == 0) {
				for _, i := range []int{1, 2} {
					if seen[i] != 0 {
						continue
					}
					_, err := alice.through(i).whoami(t)
					if je := rpcError(err); je != nil && je.Code == codeConnect {
						a := alice.needsAuthorization(t, err)
						if a.Status != string(connections.StatusRevoked) {
							t.Fatalf("through %s after the revocation: %+v", replicaNames[i], a)
						}
						link = a.URL
						seen[i] = time.Since(t0)
					}
				}
			}
			if seen[1] == 0 || seen[2] == 0 {
				t.Fatalf("revocation %d: not refused through B and C within 10 s (B %v, C %v)", rep, seen[1], seen[2])
			}
			times = append(times, max(seen[1], seen[2]))
			t.Logf("revocation %d on A: refused through B after %v, through C after %v", rep+1, seen[1].Round(time.Millisecond), seen[2].Round(time.Millisecond))
		}
		slices.Sort(times)
		p99 := times[(len(times)*99+99)/100-1]
		fmt.Printf("replicas: revocation on A refused through B and C: n=%d min=%v median=%v p99=%v max=%v\n",
			len(times), times[0].Round(time.Millisecond), times[len(times)/2].Round(time.Millisecond), p99.Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
		// The requirement is 2 s (the connections cache holds 1 s); the
		// measurement includes one call's round trip under -race.
		if p99 > 2*time.Second {
			t.Fatalf("revocation propagation p99 %v > 2 s", p99)
		}
	})

	// (d) a replica dies with a refresh in flight: B and C are stopped so
	//     A alone refreshes; the provider holds /token answers (FaultSlow,
	//     2 s); once A's refresh has reached the provider, A is shut down
	//     and B and C start again. alice's connection keeps working through
	//     B and C with tokens refreshed after A died: no refresh token lost.
	t.Run("replica dies during a refresh", func(t *testing.T) {
		r.provider.SetAccessTTL(3 * time.Second)
		defer r.provider.SetAccessTTL(time.Hour)
		_, err := alice.through(1).whoami(t)
		link = alice.needsAuthorization(t, err).URL // alice is still revoked
		connect(t)                                  // a token with the short lifetime
		r.stopReplica(1)
		r.stopReplica(2)
		r.provider.SetFault(oauthtest.FaultSlow)
		tokens := r.provider.Requests("/token")
		waitFor(t, "A's refresh to reach the provider", func() bool { return r.provider.Requests("/token") > tokens })
		t0 := time.Now()
		r.stopReplica(0) // with the refresh in flight
		t.Logf("A (Shutdown started with its refresh held at the provider) stopped after %v", time.Since(t0).Round(time.Millisecond))
		r.provider.SetFault(oauthtest.FaultNone)
		r.startReplica(t, 1)
		r.startReplica(t, 2)
		tokens = r.provider.Requests("/token")
		waitFor(t, "a refresh by B or C", func() bool { return r.provider.Requests("/token") > tokens })
		time.Sleep(3500 * time.Millisecond) // every token issued before A died has expired
		for _, i := range []int{1, 2, 1, 2} {
			res, err := alice.through(i).whoami(t)
			if err != nil || res.User != "alice" {
				t.Fatalf("alice through %s after A died mid-refresh: %+v, %v", replicaNames[i], res, err)
			}
		}
		alice.through(-1)
		for range 4 {
			if res, err := alice.whoami(t); err != nil || res.User != "alice" {
				t.Fatalf("alice round robin over B and C: %+v, %v", res, err)
			}
		}
	})

	// No provider token ever reached the logs.
	logs := r.logs.String()
	for _, c := range r.upstream.toolCalls() {
		if tok, ok := strings.CutPrefix(c, "Bearer "); ok && len(tok) > 8 && strings.Contains(logs, tok) {
			t.Fatal("a provider token is in mcpauthz's logs")
		}
	}
}
