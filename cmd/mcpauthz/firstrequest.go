package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// firstCheck is the Check a `make run` user is told to send: a tools/call
// of readDocument to the first server, as Envoy sends it (lower-case
// headers, the route's context_extensions), with the given bearer token.
func firstCheck(cfg *config.Config, token, tool string) *authv3.CheckRequest {
	s := cfg.Servers[0]
	u, _ := url.Parse(s.Resource) // validated
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"id":"doc-1"}}}`
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Scheme: u.Scheme, Host: u.Host, Path: u.Path,
			Headers: map[string]string{
				"authorization": "Bearer " + token, "content-type": "application/json",
				"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18",
			},
			Body: body,
		}},
		ContextExtensions: map[string]string{server.ContextExtensionKey: s.ID},
	}}
}

// grpcurlLine is a ready grpcurl command sending req to the ext_authz
// service at addr (it needs listen.grpc_reflection).
func grpcurlLine(addr string, req *authv3.CheckRequest) string {
	b, err := protojson.Marshal(req)
	if err != nil {
		panic(err) // a CheckRequest always marshals
	}
	// protojson may space its output differently from run to run; compact
	// JSON reads the same every time.
	var js bytes.Buffer
	if err := json.Compact(&js, b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("grpcurl -plaintext -d '%s' %s envoy.service.auth.v3.Authorization/Check", js.String(), addr)
}

// printFirstRequest tells a `make run` user what to do next: the
// development tokens, and a Check to send with grpcurl.
func printFirstRequest(w io.Writer, cfg *config.Config, viewer, admin string) {
	res := cfg.Servers[0].Resource
	fmt.Fprintf(w, "\nDevelopment tokens (valid 1h, audience %s):\n  viewer alice: %s\n  admin  root:  %s\n", res, viewer, admin)
	fmt.Fprintf(w, "\nSend a first Check, as Envoy would, with grpcurl (https://github.com/fullstorydev/grpcurl;\n"+
		"gRPC reflection is on in these development defaults):\n\n  %s\n\n", grpcurlLine(cfg.Listen.GRPC, firstCheck(cfg, viewer, "readDocument")))
	fmt.Fprint(w, "alice is a viewer: the answer is an okResponse (the headers Envoy would set and remove\n"+
		"upstream). With deleteDocument instead of readDocument it is a deniedResponse (403,\n"+
		"role_not_allowed); without the authorization header, 401 with a WWW-Authenticate challenge.\n"+
		"The decision log (JSON lines on stdout) shows each decision and its reason.\n\n")
}
