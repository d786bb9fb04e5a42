package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/mcpauthz/mcpauthz/server/config"
)

// runner is implemented by a policy engine that watches its bundles.
type runner interface{ Run(ctx context.Context) }

// Server runs a Service on its gRPC and HTTP listeners.
type Server struct {
	svc     *Service
	cfg     *config.Config
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
	grpcLis net.Listener
	httpLis net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errc    chan error
}

// New builds the service and binds both listeners (so a port 0 in the
// config is resolved before New returns: see GRPCAddr and HTTPAddr).
func New(ctx context.Context, cfg *config.Config, deps Deps) (*Server, error) {
	svc, err := NewService(ctx, cfg, deps)
	if err != nil {
		return nil, err
	}
	s := &Server{svc: svc, cfg: cfg, log: svc.log, errc: make(chan error, 2)}
	if s.grpcLis, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
		svc.Close()
		return nil, fmt.Errorf("server: listen grpc: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
		_ = s.grpcLis.Close()
		svc.Close()
		return nil, fmt.Errorf("server: listen http: %w", err)
	}
	s.grpc = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(cfg.MCP.MaxBodyBytes+256<<10),
		// A fixed pool of stream workers: Rego evaluation recurses deeply,
		// and a fresh goroutine per Check would grow (copy) its stack on
		// every request. Workers keep their grown stacks.
		grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0)))),
	)
	authv3.RegisterAuthorizationServer(s.grpc, svc)
	extprocv3.RegisterExternalProcessorServer(s.grpc, svc.extproc)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	registerReflection(s.grpc, cfg.Listen.GRPCReflection)
	s.http = &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	return s, nil
}

// Service returns the ext_authz service (for in-process callers and tests).
func (s *Server) Service() *Service { return s.svc }

// GRPCAddr is the bound ext_authz address.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Start serves in the background until Shutdown.
func (s *Server) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	if r, ok := s.svc.policy.(runner); ok {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); r.Run(ctx) }()
	}
	if is := s.svc.issuer; is != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); is.Run(ctx) }()
	}
	if m := s.svc.connections; m != nil {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); m.Run(ctx) }()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	go func() { s.errc <- s.grpc.Serve(s.grpcLis) }()
	go func() {
		if err := s.http.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
			return
		}
		s.errc <- nil
	}()
	s.log.Info("mcpauthz serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "servers", len(s.cfg.Servers),
		"policy_revision", s.svc.policy.Status().Revision)
}

// Shutdown stops accepting Checks, lets in-flight Checks finish (bounded by
// the config's shutdown_timeout and ctx), then flushes the decision log.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Listen.ShutdownTimeout)
	defer cancel()
	s.health.Shutdown() // health checks report NOT_SERVING so Envoy drains
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	err := s.http.Shutdown(ctx)
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.svc.Close()
	return err
}

// Run serves until ctx is cancelled (SIGTERM in main) or a listener fails,
// then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	s.Start(ctx)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-s.errc:
		if runErr != nil {
			runErr = fmt.Errorf("server: %w", runErr)
		}
	}
	s.log.Info("mcpauthz shutting down")
	if err := s.Shutdown(context.WithoutCancel(ctx)); err != nil && runErr == nil {
		runErr = fmt.Errorf("server: shutdown: %w", err)
	}
	return runErr
}
