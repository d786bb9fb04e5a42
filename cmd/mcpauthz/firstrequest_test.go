package main

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mcpauthz/mcpauthz/server"
)

var grpcurlRE = regexp.MustCompile(`(?m)^  grpcurl -plaintext -d '([^']+)' (\S+) envoy\.service\.auth\.v3\.Authorization/Check$`)

// TestFirstRequestHint: the grpcurl line `make run` prints is a Check the
// embedded defaults allow, and the variations its text names are denied
// as it says.
func TestFirstRequestHint(t *testing.T) {
	env, err := newDevEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	cfg := env.cfg
	cfg.Listen.GRPC, cfg.Listen.HTTP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Audit.Output = "off"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.New(ctx, cfg, server.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(ctx)
	defer func() { _ = srv.Shutdown(context.Background()) }()
	cfg.Listen.GRPC = srv.GRPCAddr()

	var b strings.Builder
	printFirstRequest(&b, cfg, env.mint("alice", []string{"viewer"}, "docs:read"), env.mint("root", []string{"admin"}, "docs:read docs:write docs:admin"))
	text := b.String()
	m := grpcurlRE.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no grpcurl line:\n%s", text)
	}
	if m[2] != srv.GRPCAddr() {
		t.Errorf("grpcurl dials %s, the service listens on %s", m[2], srv.GRPCAddr())
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := func(js string) *authv3.CheckResponse {
		t.Helper()
		var req authv3.CheckRequest
		if err := protojson.Unmarshal([]byte(js), &req); err != nil {
			t.Fatalf("the printed -d is not a CheckRequest: %v", err)
		}
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := check(m[1]); r.GetOkResponse() == nil {
		t.Fatalf("the printed Check is denied: %v", r)
	}
	if !strings.Contains(text, "deleteDocument instead of readDocument it is a deniedResponse (403") {
		t.Fatalf("hint text changed; update this test:\n%s", text)
	}
	if r := check(strings.Replace(m[1], "readDocument", "deleteDocument", 1)); r.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Errorf("deleteDocument: %v, want 403", r)
	}
	// grpcurl finds the service through reflection, on in these defaults.
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "envoy.service.auth.v3.Authorization"}}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || len(r.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("reflection does not describe the Check service: %v %v", r, err)
	}
	noAuth := regexp.MustCompile(`"authorization":"Bearer [^"]+",?`).ReplaceAllString(m[1], "")
	if r := check(noAuth); r.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Errorf("without a token: %v, want 401", r)
	}
}
