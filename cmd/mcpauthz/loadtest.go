package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// emptyAuthz is the baseline: an ext_authz handler that allows everything
// without looking at the request.
type emptyAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (emptyAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return envoy.Allow(nil, nil), nil
}

type loadResult struct {
	name      string
	n, errs   int
	elapsed   time.Duration
	p50, p99  time.Duration
	perSecond float64
}

// loadtestOptions are loadtest's flags.
type loadtestOptions struct {
	duration            time.Duration
	conc, rounds, users int
	cpuprofile          string
}

func cmdLoadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseLoadtestFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		stop, err := startCPUProfile(o.cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	env, err := newDevEnv()
	if err != nil {
		return err
	}
	defer env.Close()
	cfg := env.cfg
	cfg.Listen.GRPC, cfg.Listen.HTTP, cfg.Audit.Output = "127.0.0.1:0", "127.0.0.1:0", "off"
	lr := &loadRun{ctx: ctx, opts: o, env: env, log: mustLogger(stderr, slog.LevelWarn), best: map[string]loadResult{}}
	defer lr.close()
	reqs, err := lr.startWarmTargets()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loadtest: %d concurrent Checks, %s per round, %d rounds per target, GOMAXPROCS=%d\n",
		o.conc, o.duration, o.rounds, runtimeProcs())
	if err := lr.measureWarm(reqs); err != nil {
		return err
	}
	if o.users > 0 {
		if err := lr.measureCold(stdout); err != nil {
			return err
		}
	}
	return lr.report(stdout)
}

func parseLoadtestFlags(args []string, stderr io.Writer) (loadtestOptions, error) {
	var o loadtestOptions
	fl := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.DurationVar(&o.duration, "duration", 5*time.Second, "measuring time per target")
	fl.IntVar(&o.conc, "concurrency", 32, "concurrent in-flight Checks")
	fl.IntVar(&o.rounds, "rounds", 2, "alternating rounds per target (the best round of each is reported)")
	fl.IntVar(&o.users, "users", 2000, "distinct users for the cold target (each Check a token never seen before); 0 skips it")
	fl.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fl.Usage = printUsage(fl, stderr, "Usage: mcpauthz loadtest [--duration 5s] [--concurrency 32] [--rounds 2] [--users 2000] [--cpuprofile FILE]\n\n"+
		"Measures the gRPC Check path in-process: mcpauthz on its embedded defaults\n"+
		"beside an empty ext_authz handler in the same run, over real gRPC\n"+
		"connections on loopback, and prints the throughput, p50 and p99 of each\n"+
		"and their ratio to the empty handler. Targets: mcpauthz (default config,\n"+
		"16 warm users, decision cache on), mcpauthz-rego (decision cache off: the\n"+
		"policy is evaluated on every Check) and mcpauthz-cold (--users distinct\n"+
		"users, each Check a token never seen before: RS256 verification, claims,\n"+
		"prepared principal, policy; one round, until the tokens run out or\n"+
		"--duration ends). Any denial fails the run.\n\n")
	if err := parseNoArgs(fl, args); err != nil {
		return o, err
	}
	if o.duration <= 0 || o.duration > 5*time.Minute || o.conc < 1 || o.conc > 4096 || o.rounds < 1 || o.rounds > 10 || o.users < 0 || o.users > 1_000_000 {
		return o, fmt.Errorf("--duration must be in (0, 5m], --concurrency in [1, 4096], --rounds in [1, 10], --users in [0, 1000000]")
	}
	return o, nil
}

// startCPUProfile starts writing a CPU profile to path; stop ends it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// loadTarget is one ext_authz server under load.
type loadTarget struct{ name, addr string }

// loadRun is one loadtest: the servers it started, its targets in report
// order, and the best round of each.
type loadRun struct {
	ctx     context.Context
	opts    loadtestOptions
	env     *devEnv
	log     *slog.Logger
	targets []loadTarget
	best    map[string]loadResult
	stops   []func() // run in reverse order by close
}

func (lr *loadRun) close() {
	for i := len(lr.stops) - 1; i >= 0; i-- {
		lr.stops[i]()
	}
}

// startServer starts mcpauthz on cfg; close shuts it down.
func (lr *loadRun) startServer(cfg *config.Config) (*server.Server, error) {
	srv, err := server.New(lr.ctx, cfg, server.Deps{Logger: lr.log})
	if err != nil {
		return nil, err
	}
	srv.Start(lr.ctx)
	lr.stops = append(lr.stops, func() { _ = srv.Shutdown(context.WithoutCancel(lr.ctx)) })
	return srv, nil
}

// startWarmTargets starts mcpauthz, mcpauthz-rego (decision cache off) and
// the empty handler, and returns the warm requests: sixteen distinct
// viewers, so the load is not one cached principal.
func (lr *loadRun) startWarmTargets() ([]*authv3.CheckRequest, error) {
	srv, err := lr.startServer(lr.env.cfg)
	if err != nil {
		return nil, err
	}
	regoCfg := *lr.env.cfg
	regoCfg.Policy.DecisionCacheSize = -1
	regoSrv, err := lr.startServer(&regoCfg)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	empty := grpc.NewServer()
	authv3.RegisterAuthorizationServer(empty, emptyAuthz{})
	go func() { _ = empty.Serve(lis) }()
	lr.stops = append(lr.stops, empty.Stop)

	reqs := make([]*authv3.CheckRequest, 16)
	for i := range reqs {
		reqs[i] = sampleCheckRequest(lr.env.mint(fmt.Sprintf("viewer-%02d", i), []string{"viewer"}, "docs:read"), fmt.Sprintf("load-session-%02d", i))
	}
	// The pipeline must really allow the sample; a load of denials would
	// measure the wrong thing.
	for _, addr := range []string{srv.GRPCAddr(), regoSrv.GRPCAddr()} {
		if err := expectAllowed(lr.ctx, addr, reqs[0]); err != nil {
			return nil, err
		}
	}
	lr.targets = []loadTarget{
		{"empty-ext_authz", lis.Addr().String()},
		{"mcpauthz", srv.GRPCAddr()},
		{"mcpauthz-rego", regoSrv.GRPCAddr()},
	}
	return reqs, nil
}

// measureWarm drives every target in alternating rounds, keeping the best
// round of each.
func (lr *loadRun) measureWarm(reqs []*authv3.CheckRequest) error {
	warm := func(w int) func() *authv3.CheckRequest {
		return func() *authv3.CheckRequest { return reqs[w%len(reqs)] }
	}
	for range lr.opts.rounds {
		for _, tgt := range lr.targets {
			r, err := drive(lr.ctx, tgt.name, tgt.addr, warm, lr.opts.conc, lr.opts.duration)
			if err != nil {
				return err
			}
			if b, ok := lr.best[tgt.name]; !ok || r.perSecond > b.perSecond {
				lr.best[tgt.name] = r
			}
		}
	}
	return nil
}

// measureCold drives a fresh server (empty caches) with one token per
// user, each sent once, in its own session.
func (lr *loadRun) measureCold(stdout io.Writer) error {
	coldSrv, err := lr.startServer(lr.env.cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "minting %d RS256 tokens for the cold target...\n", lr.opts.users)
	cold := mintUsers(lr.env, lr.opts.users)
	var next atomic.Int64
	pick := func(int) func() *authv3.CheckRequest {
		return func() *authv3.CheckRequest {
			if i := next.Add(1) - 1; i < int64(len(cold)) {
				return cold[i]
			}
			return nil
		}
	}
	r, err := drive(lr.ctx, "mcpauthz-cold", coldSrv.GRPCAddr(), pick, lr.opts.conc, lr.opts.duration)
	if err != nil {
		return err
	}
	lr.best[r.name] = r
	lr.targets = append(lr.targets, loadTarget{r.name, coldSrv.GRPCAddr()})
	return nil
}

// report prints each target's best round and the ratios to the empty
// handler; a target with failed or denied Checks fails the run.
func (lr *loadRun) report(stdout io.Writer) error {
	best := lr.best
	fmt.Fprintf(stdout, "%-16s %10s %12s %10s %10s %7s\n", "target", "checks", "checks/s", "p50", "p99", "errors")
	for _, tgt := range lr.targets {
		r := best[tgt.name]
		fmt.Fprintf(stdout, "%-16s %10d %12.0f %10s %10s %7d\n", r.name, r.n, r.perSecond, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errs)
	}
	base := best["empty-ext_authz"].perSecond
	fmt.Fprintf(stdout, "throughput ratio mcpauthz/empty = %.2f (target >= 0.60; default config, decision cache on)\n", best["mcpauthz"].perSecond/base)
	fmt.Fprintf(stdout, "throughput ratio mcpauthz-rego/empty = %.2f (decision cache off: the policy is evaluated on every Check)\n", best["mcpauthz-rego"].perSecond/base)
	if r, ok := best["mcpauthz-cold"]; ok {
		fmt.Fprintf(stdout, "throughput ratio mcpauthz-cold/empty = %.2f (%d distinct users, every Check a new token)\n", r.perSecond/base, r.n)
	}
	for _, tgt := range lr.targets {
		if n := best[tgt.name].errs; n > 0 {
			return fmt.Errorf("%s: %d Checks failed or were denied", tgt.name, n)
		}
	}
	return nil
}

func expectAllowed(ctx context.Context, addr string, req *authv3.CheckRequest) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return fmt.Errorf("sample Check: %w", err)
	}
	if resp.GetOkResponse() == nil {
		return fmt.Errorf("sample Check was denied (status %d): %s", resp.GetDeniedResponse().GetStatus().GetCode(), resp.GetDeniedResponse().GetBody())
	}
	return nil
}

// drive sends Checks from conc workers until d has passed; worker w takes
// its requests from next(w), and stops early when that returns nil.
func drive(ctx context.Context, name, addr string, next func(w int) func() *authv3.CheckRequest, conc int, d time.Duration) (loadResult, error) {
	// A few connections, as Envoy keeps a small pool of HTTP/2 connections.
	const conns = 4
	clients := make([]authv3.AuthorizationClient, conns)
	for i := range clients {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return loadResult{}, err
		}
		defer conn.Close()
		clients[i] = authv3.NewAuthorizationClient(conn)
	}
	ctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Add(1)
		go func(c authv3.AuthorizationClient, pick func() *authv3.CheckRequest) {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			bad := 0
			for time.Now().Before(deadline) {
				req := pick()
				if req == nil {
					break
				}
				t0 := time.Now()
				resp, err := c.Check(ctx, req)
				local = append(local, time.Since(t0))
				if err != nil || resp.GetOkResponse() == nil {
					bad++
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			errs += bad
			mu.Unlock()
		}(clients[w%conns], next(w))
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	r := loadResult{name: name, n: len(lats), errs: errs, elapsed: elapsed}
	if len(lats) > 0 {
		r.p50 = lats[len(lats)/2]
		r.p99 = lats[len(lats)*99/100]
		r.perSecond = float64(len(lats)) / elapsed.Seconds()
	}
	return r, nil
}

// sampleCheckRequest is a warm-path Check as Envoy sends it: a 2025-06-18
// tools/call of readDocument by a viewer, body packed as bytes.
func sampleCheckRequest(token, session string) *authv3.CheckRequest {
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-1"}}}`)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: sockAddr("127.0.0.1", 50000)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "load-1", Method: "POST", Path: "/docs/mcp", Host: "127.0.0.1:10000", Scheme: "http", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": "127.0.0.1:10000", ":method": "POST", ":path": "/docs/mcp", ":scheme": "http",
				"authorization": "Bearer " + token, "content-type": "application/json",
				"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18",
				"mcp-session-id": session, "x-request-id": "load-1", "x-envoy-auth-partial-body": "false",
				"user-agent": "mcpauthz-loadtest",
			},
			RawBody: body,
		}},
		ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"},
	}}
}

// mintUsers returns one Check per distinct user, each with its own token
// and session, minted on every core.
func mintUsers(env *devEnv, n int) []*authv3.CheckRequest {
	out := make([]*authv3.CheckRequest, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				out[i] = sampleCheckRequest(env.mint(fmt.Sprintf("cold-%07d", i), []string{"viewer"}, "docs:read"), fmt.Sprintf("cold-session-%07d", i))
			}
		})
	}
	wg.Wait()
	return out
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
