package server

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// registerReflection serves gRPC server reflection (v1 and v1alpha) on s
// when listen.grpc_reflection is on, so grpcurl and grpcui can describe
// and call envoy.service.auth.v3.Authorization/Check without the proto
// files. Call it after every service is registered.
func registerReflection(s *grpc.Server, enabled bool) {
	if enabled {
		reflection.Register(s)
	}
}
