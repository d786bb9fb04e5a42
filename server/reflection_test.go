package server

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// listServices asks a server's reflection service for its services.
func listServices(t *testing.T, enabled bool) ([]string, error) {
	t.Helper()
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, authv3.UnimplementedAuthorizationServer{})
	registerReflection(s, enabled)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	return names, nil
}

func TestReflection(t *testing.T) {
	names, err := listServices(t, true)
	if err != nil {
		t.Fatalf("reflection on: %v", err)
	}
	if !slices.Contains(names, "envoy.service.auth.v3.Authorization") {
		t.Errorf("reflection lists %v, want the ext_authz service", names)
	}
	if _, err := listServices(t, false); err == nil {
		t.Error("reflection answered while off")
	}
}
