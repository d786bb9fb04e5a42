package envoy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// ExtAuthzMetadataNamespace is the dynamic metadata namespace under which
// Envoy's ext_authz filter stores CheckResponse.dynamic_metadata; the
// ext_proc filter forwards it to mcpauthz when its
// metadata_options.forwarding_namespaces.untyped lists it.
const ExtAuthzMetadataNamespace = "envoy.filters.http.ext_authz"

// ExtProcFilterName is the name of Envoy's external processing HTTP filter.
const ExtProcFilterName = "envoy.filters.http.ext_proc"

// Header is one HTTP header to set on the upstream request (Allow) or on the
// local reply (Deny).
type Header struct {
	Name, Value string
}

// headerOptions converts hs into HeaderValueOptions with append_action
// OVERWRITE_IF_EXISTS_OR_ADD, using two backing arrays instead of 2*len(hs)
// separate allocations.
func headerOptions(hs []Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.Name, h.Value
		opts[i].Header = &vals[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

// Allow builds an OK CheckResponse. Every header in set is sent with
// append_action OVERWRITE_IF_EXISTS_OR_ADD, so it replaces any client-sent
// header of the same name (Envoy's default, APPEND_IF_EXISTS_OR_ADD, would
// keep the client's value beside it). remove becomes
// OkHttpResponse.headers_to_remove, which Envoy applies after the header
// mutations. Allow does not retain or copy remove.
func Allow(set []Header, remove []string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headerOptions(set),
			HeadersToRemove: remove,
		}},
	}
}

// AllowWithMetadata is Allow carrying dynamic metadata: Envoy's ext_authz
// filter stores md under ExtAuthzMetadataNamespace for the filters after it
// (mcpauthz's ext_proc reads it there). md is not copied; a nil md is Allow.
func AllowWithMetadata(set []Header, remove []string, md *structpb.Struct) *authv3.CheckResponse {
	r := Allow(set, remove)
	r.DynamicMetadata = md
	return r
}

// Deny builds a denied CheckResponse: Envoy sends httpStatus, headers and
// body to the client and never contacts the upstream. The gRPC status is
// UNAUTHENTICATED for 401 and PERMISSION_DENIED otherwise. A httpStatus <= 0
// leaves the HTTP status unset, which Envoy turns into 403.
func Deny(httpStatus int, headers []Header, body []byte) *authv3.CheckResponse {
	c := code.Code_PERMISSION_DENIED
	if httpStatus == 401 {
		c = code.Code_UNAUTHENTICATED
	}
	d := &authv3.DeniedHttpResponse{Headers: headerOptions(headers), Body: string(body)}
	if httpStatus > 0 {
		d.Status = &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(c)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: d},
	}
}
