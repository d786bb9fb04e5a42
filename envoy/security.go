package envoy

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	hcmFilterName      = "envoy.filters.network.http_connection_manager"
	extAuthzFilterName = "envoy.filters.http.ext_authz"
	routerFilterName   = "envoy.filters.http.router"
)

// SecurityIssues checks a (schema-valid) bootstrap for the settings
// mcpauthz depends on, returning one Issue per deviation. For every HTTP
// connection manager on a static listener:
//
//   - normalize_path and merge_slashes on, escaped slashes REJECT_REQUEST;
//   - an ext_authz filter before the router with transport_api_version V3,
//     a gRPC service, failure_mode_allow false, include_peer_certificate,
//     and with_request_body {allow_partial_message: false, pack_as_bytes: true};
//   - ext_authz disabled only on exact RFC 9728 metadata paths (never on a
//     virtual host or a prefix route);
//   - every other forwarding route names its MCP server in
//     context_extensions["mcp_server"] and has timeout 0s (SSE streams).
//
// It is what `mcpauthz envoy validate --strict` runs after schema checks.
func SecurityIssues(b *bootstrapv3.Bootstrap) []Issue {
	var out []Issue
	add := func(path, format string, a ...any) {
		out = append(out, Issue{Path: path, Message: fmt.Sprintf(format, a...)})
	}
	found := 0
	for li, l := range b.GetStaticResources().GetListeners() {
		for ci, fc := range l.GetFilterChains() {
			for fi, f := range fc.GetFilters() {
				if f.GetName() != hcmFilterName || f.GetTypedConfig() == nil {
					continue
				}
				p := fmt.Sprintf("static_resources.listeners[%d].filter_chains[%d].filters[%d].typed_config", li, ci, fi)
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					add(p, "not an HttpConnectionManager: %v", err)
					continue
				}
				found++
				checkHCM(&hcm, p, add)
			}
		}
	}
	if found == 0 {
		add("static_resources.listeners", "no HTTP connection manager found")
	}
	return out
}

func checkHCM(hcm *hcmv3.HttpConnectionManager, p string, add func(string, string, ...any)) {
	if !hcm.GetNormalizePath().GetValue() {
		add(p+".normalize_path", "must be true (policy and routing must see the same path)")
	}
	if !hcm.GetMergeSlashes() {
		add(p+".merge_slashes", "must be true")
	}
	if hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		add(p+".path_with_escaped_slashes_action", "must be REJECT_REQUEST, got %s", hcm.GetPathWithEscapedSlashesAction())
	}
	authzAt, routerAt := -1, -1
	for i, hf := range hcm.GetHttpFilters() {
		switch hf.GetName() {
		case extAuthzFilterName:
			if authzAt >= 0 {
				continue
			}
			authzAt = i
			fp := fmt.Sprintf("%s.http_filters[%d].typed_config", p, i)
			var ea extauthzv3.ExtAuthz
			if hf.GetTypedConfig() == nil || hf.GetTypedConfig().UnmarshalTo(&ea) != nil {
				add(fp, "must be an envoy.extensions.filters.http.ext_authz.v3.ExtAuthz")
				continue
			}
			checkExtAuthz(&ea, fp, add)
		case routerFilterName:
			if routerAt < 0 {
				routerAt = i
			}
		}
	}
	switch {
	case authzAt < 0:
		add(p+".http_filters", "no %s filter", extAuthzFilterName)
	case routerAt >= 0 && routerAt < authzAt:
		add(p+".http_filters", "%s must come before the router", extAuthzFilterName)
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		if hcm.GetRds() != nil {
			add(p+".rds", "routes come from RDS and cannot be checked here")
		}
		return
	}
	for vi, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.route_config.virtual_hosts[%d]", p, vi)
		if perRouteDisabled(vh.GetTypedPerFilterConfig()) {
			add(vp+".typed_per_filter_config", "ext_authz must not be disabled for a whole virtual host")
		}
		for ri, r := range vh.GetRoutes() {
			checkRoute(r, fmt.Sprintf("%s.routes[%d]", vp, ri), add)
		}
	}
}

func checkExtAuthz(ea *extauthzv3.ExtAuthz, fp string, add func(string, string, ...any)) {
	if ea.GetTransportApiVersion().String() != "V3" {
		add(fp+".transport_api_version", "must be V3")
	}
	if ea.GetGrpcService() == nil {
		add(fp+".grpc_service", "mcpauthz is a gRPC ext_authz service")
	}
	if ea.GetFailureModeAllow() {
		add(fp+".failure_mode_allow", "must be false (fail closed)")
	}
	if !ea.GetIncludePeerCertificate() {
		add(fp+".include_peer_certificate", "must be true")
	}
	wb := ea.GetWithRequestBody()
	switch {
	case wb == nil:
		add(fp+".with_request_body", "required: mcpauthz authorizes on the JSON-RPC body")
	default:
		if wb.GetAllowPartialMessage() {
			add(fp+".with_request_body.allow_partial_message", "must be false (a truncated body must not be authorized)")
		}
		if !wb.GetPackAsBytes() {
			add(fp+".with_request_body.pack_as_bytes", "must be true")
		}
	}
}

func perRouteDisabled(m map[string]*anypb.Any) bool {
	a, ok := m[extAuthzFilterName]
	if !ok {
		return false
	}
	var pr extauthzv3.ExtAuthzPerRoute
	return a.UnmarshalTo(&pr) == nil && pr.GetDisabled()
}

func checkRoute(r *routev3.Route, rp string, add func(string, string, ...any)) {
	var pr extauthzv3.ExtAuthzPerRoute
	cfg, hasCfg := r.GetTypedPerFilterConfig()[extAuthzFilterName]
	if hasCfg && cfg.UnmarshalTo(&pr) != nil {
		add(rp+".typed_per_filter_config["+extAuthzFilterName+"]", "must be an ExtAuthzPerRoute")
		return
	}
	if pr.GetDisabled() {
		if path := r.GetMatch().GetPath(); path == "" || !IsMetadataPath(path) {
			add(rp+".match", "ext_authz is disabled, which is allowed only on an exact path under %s", MetadataPathPrefix)
		}
		return
	}
	if r.GetRoute() == nil {
		return // redirect or direct response: nothing reaches an MCP server
	}
	if pr.GetCheckSettings().GetContextExtensions()["mcp_server"] == "" {
		add(rp+".typed_per_filter_config", "no check_settings.context_extensions.mcp_server naming the MCP server")
	}
	if t := r.GetRoute().GetTimeout(); t == nil || t.AsDuration() != 0 {
		add(rp+".route.timeout", "must be 0s (the default 15s would cut SSE streams)")
	}
}
