package envoy

import (
	"fmt"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

const (
	hcmFilterName      = "envoy.filters.network.http_connection_manager"
	extAuthzFilterName = "envoy.filters.http.ext_authz"
	corsFilterName     = "envoy.filters.http.cors"
	routerFilterName   = "envoy.filters.http.router"
)

// StrictOptions adapts SecurityIssues to an mcpauthz configuration. The
// zero value checks against mcpauthz's defaults.
type StrictOptions struct {
	// IdentityHeaderPrefix is the config's headers.prefix (default
	// "x-mcp-"): ext_authz must show mcpauthz every client header under it
	// so that it can strip them.
	IdentityHeaderPrefix string
	// StripHeaders is the config's headers.strip: further client headers
	// mcpauthz must see to remove.
	StripHeaders []string
	// ExtProcOptional accepts a bootstrap without mcpauthz's ext_proc
	// filter (no list filtering). A filter that is present is checked
	// either way.
	ExtProcOptional bool
}

// SecurityIssues is SecurityIssuesWith(b, StrictOptions{}).
func SecurityIssues(b *bootstrapv3.Bootstrap) []Issue {
	return SecurityIssuesWith(b, StrictOptions{})
}

// SecurityIssuesWith checks a (schema-valid) bootstrap for the settings
// mcpauthz depends on, returning one Issue per deviation (Line is 0: use
// Document.SecurityIssues for lines). For every HTTP connection manager on
// a static listener:
//
//   - normalize_path and merge_slashes on, escaped slashes REJECT_REQUEST,
//     common_http_protocol_options.headers_with_underscores_action
//     REJECT_REQUEST (an upstream may fold x_mcp_subject into x-mcp-subject);
//   - an ext_authz filter, not disabled, before the router (and after the
//     CORS filter when there is one) with transport_api_version V3, a gRPC
//     service, include_peer_certificate, and with_request_body
//     {allow_partial_message: false, pack_as_bytes: true};
//   - no ext_authz setting that lets a request through without mcpauthz's
//     decision: failure_mode_allow(_header_add), filter_enabled or
//     filter_enabled_metadata without deny_at_disable, shadow_mode,
//     status_on_error below 400, clear_route_cache (the route, and so the
//     upstream, may change after the decision), decoder_header_mutation_rules
//     that drop refused mutations silently;
//   - allowed_headers / disallowed_headers that hide from mcpauthz a header
//     it reads or must strip (allowed_headers must match every header);
//   - ext_authz disabled (ExtAuthzPerRoute or FilterConfig, at any level)
//     only on exact RFC 9728 metadata paths whose cluster serves no MCP
//     route, never on a virtual host or route configuration;
//   - every other forwarding route names its MCP server in the merged
//     context_extensions["mcp_server"], keeps the body (no
//     disable_request_body_buffering, no partial per-route body), sends its
//     checks to the same service, names its cluster statically and has
//     timeout 0s (SSE streams);
//   - per-route CORS policies never combine allow_credentials with an
//     origin matcher that is not an exact origin;
//   - mcpauthz's ext_proc filter (unless StrictOptions.ExtProcOptional and
//     absent) after ext_authz and before the router, on ext_authz's gRPC
//     cluster without a stream timeout, failing closed, headers SEND both
//     ways, allow_mode_override without allowed_override_modes, no
//     observability mode, send-body-without-waiting, disabled immediate
//     responses or forward_rules, forwarding the ext_authz metadata
//     namespace; on every MCP route not disabled, overridden to skip
//     headers or sent elsewhere, and with accept-encoding forced to
//     identity (or removed) on the route, virtual host or configuration.
//
// It is what `mcpauthz envoy validate --strict` runs after schema checks.
func SecurityIssuesWith(b *bootstrapv3.Bootstrap, o StrictOptions) []Issue {
	c := &checker{names: newHeaderProbes(o), opts: o}
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
					c.add(p, "not an HttpConnectionManager: %v", err)
					continue
				}
				found++
				c.hcm(&hcm, p)
			}
		}
	}
	if found == 0 {
		c.add("static_resources.listeners", "no HTTP connection manager found")
	}
	return c.out
}

type checker struct {
	names headerProbes
	opts  StrictOptions
	xp    extProcInfo // of the HTTP connection manager being checked
	out   []Issue
}

func (c *checker) add(path, format string, a ...any) {
	c.out = append(c.out, Issue{Path: path, Message: fmt.Sprintf(format, a...)})
}

func (c *checker) hcm(hcm *hcmv3.HttpConnectionManager, p string) {
	c.hcmPaths(hcm, p)
	f := c.httpFilters(hcm.GetHttpFilters(), p)
	c.filterOrder(f, p)
	rc := hcm.GetRouteConfig()
	if rc == nil {
		if hcm.GetRds() != nil {
			c.add(p+".rds", "routes come from RDS and cannot be checked here")
		}
		return
	}
	c.routes(rc, p+".route_config", f.authzDisabled, f.ea)
}

// hcmPaths checks the HCM's path normalisation and header name settings.
func (c *checker) hcmPaths(hcm *hcmv3.HttpConnectionManager, p string) {
	if !hcm.GetNormalizePath().GetValue() {
		c.add(p+".normalize_path", "must be true (policy and routing must see the same path)")
	}
	if !hcm.GetMergeSlashes() {
		c.add(p+".merge_slashes", "must be true")
	}
	if hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		c.add(p+".path_with_escaped_slashes_action", "must be REJECT_REQUEST, got %s", hcm.GetPathWithEscapedSlashesAction())
	}
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a.String() != "REJECT_REQUEST" {
		c.add(p+".common_http_protocol_options.headers_with_underscores_action",
			"must be REJECT_REQUEST, got %s: upstreams that fold '_' into '-' would read a client's x_mcp_subject as the identity header mcpauthz sets", a)
	}
}

// hcmFilters is where the filters mcpauthz relies on first stand in an
// HCM's http_filters (-1: absent), with their configurations.
type hcmFilters struct {
	authzAt, routerAt, corsAt, procAt int
	authzDisabled                     bool
	ea                                *extauthzv3.ExtAuthz
	xp                                *extprocv3.ExternalProcessor
}

// httpFilters finds the filters and checks ext_authz's configuration; it
// sets c.xp for the route checks.
func (c *checker) httpFilters(filters []*hcmv3.HttpFilter, p string) hcmFilters {
	f := hcmFilters{authzAt: -1, routerAt: -1, corsAt: -1, procAt: -1}
	c.xp = extProcInfo{}
	for i, hf := range filters {
		hp := fmt.Sprintf("%s.http_filters[%d]", p, i)
		switch hf.GetName() {
		case ExtProcFilterName:
			if f.procAt >= 0 {
				continue
			}
			f.procAt = i
			c.xp = extProcInfo{present: true, disabled: hf.GetDisabled()}
			var cfg extprocv3.ExternalProcessor
			if hf.GetTypedConfig() == nil || hf.GetTypedConfig().UnmarshalTo(&cfg) != nil {
				c.add(hp+".typed_config", "must be an envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor")
				continue
			}
			f.xp = &cfg
			c.xp.cluster = cfg.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		case extAuthzFilterName:
			if f.authzAt >= 0 {
				continue
			}
			f.authzAt = i
			if hf.GetDisabled() {
				f.authzDisabled = true
				c.add(hp+".disabled", "must be false: ext_authz would run only on routes that re-enable it")
			}
			var cfg extauthzv3.ExtAuthz
			if hf.GetTypedConfig() == nil || hf.GetTypedConfig().UnmarshalTo(&cfg) != nil {
				c.add(hp+".typed_config", "must be an envoy.extensions.filters.http.ext_authz.v3.ExtAuthz")
				continue
			}
			f.ea = &cfg
			c.extAuthz(f.ea, hp+".typed_config")
		case routerFilterName:
			if f.routerAt < 0 {
				f.routerAt = i
			}
		case corsFilterName:
			if f.corsAt < 0 {
				f.corsAt = i
			}
		}
	}
	return f
}

// filterOrder checks that ext_authz and ext_proc are present and in
// order (CORS before ext_authz, ext_proc after it, both before the
// router), and ext_proc's configuration.
func (c *checker) filterOrder(f hcmFilters, p string) {
	switch {
	case f.authzAt < 0:
		c.add(p+".http_filters", "no %s filter", extAuthzFilterName)
	case f.routerAt >= 0 && f.routerAt < f.authzAt:
		c.add(p+".http_filters", "%s must come before the router", extAuthzFilterName)
	}
	if f.xp != nil {
		c.extProcFilter(f.xp, fmt.Sprintf("%s.http_filters[%d].typed_config", p, f.procAt), f.ea)
	}
	switch {
	case f.procAt < 0 && !c.opts.ExtProcOptional:
		c.add(p+".http_filters", "no %s filter: tool, prompt and resource lists reach clients unfiltered (StrictOptions.ExtProcOptional accepts that)", ExtProcFilterName)
	case f.procAt >= 0 && f.procAt < f.authzAt:
		c.add(fmt.Sprintf("%s.http_filters[%d]", p, f.procAt), "%s must come after %s, whose decision it reads", describeExtProc(), extAuthzFilterName)
	case f.procAt >= 0 && f.routerAt >= 0 && f.routerAt < f.procAt:
		c.add(fmt.Sprintf("%s.http_filters[%d]", p, f.procAt), "%s must come before the router", describeExtProc())
	}
	if f.corsAt > f.authzAt && f.authzAt >= 0 {
		c.add(fmt.Sprintf("%s.http_filters[%d]", p, f.corsAt), "%s must come before %s, or browsers' CORS preflights (which carry no token) are refused", corsFilterName, extAuthzFilterName)
	}
}

func (c *checker) extAuthz(ea *extauthzv3.ExtAuthz, fp string) {
	if ea.GetTransportApiVersion().String() != "V3" {
		c.add(fp+".transport_api_version", "must be V3")
	}
	if ea.GetGrpcService() == nil {
		c.add(fp+".grpc_service", "mcpauthz is a gRPC ext_authz service")
	}
	if ea.GetFailureModeAllow() {
		c.add(fp+".failure_mode_allow", "must be false (fail closed): an unreachable mcpauthz would let every request through")
	}
	if !ea.GetIncludePeerCertificate() {
		c.add(fp+".include_peer_certificate", "must be true")
	}
	if ea.GetFailureModeAllowHeaderAdd() {
		c.add(fp+".failure_mode_allow_header_add", "must be false: it only has a meaning when requests pass without a decision")
	}
	deny := ea.GetDenyAtDisable().GetDefaultValue().GetValue()
	if ea.GetFilterEnabled() != nil && !deny {
		c.add(fp+".filter_enabled", "lets the runtime or a percentage switch ext_authz off and requests through; remove it or set deny_at_disable: {default_value: true}")
	}
	if ea.GetFilterEnabledMetadata() != nil && !deny {
		c.add(fp+".filter_enabled_metadata", "requests whose metadata does not match pass without a decision; remove it or set deny_at_disable: {default_value: true}")
	}
	if dad := ea.GetDenyAtDisable(); dad != nil && !deny && ea.GetFilterEnabled() == nil && ea.GetFilterEnabledMetadata() == nil {
		c.add(fp+".deny_at_disable.default_value", "must be true when set: requests are allowed whenever the filter is disabled")
	}
	if ea.GetShadowMode() {
		c.add(fp+".shadow_mode", "must be false: in shadow mode ext_authz never refuses a request")
	}
	if s := ea.GetStatusOnError(); s != nil && int32(s.GetCode()) < 400 {
		c.add(fp+".status_on_error.code", "must be 4xx or 5xx, got %d: an error must never look like a success", int32(s.GetCode()))
	}
	if ea.GetClearRouteCache() {
		c.add(fp+".clear_route_cache", "must be false: the route (and so the upstream and its context_extensions) could change after mcpauthz decided")
	}
	if r := ea.GetDecoderHeaderMutationRules(); r != nil && !r.GetDisallowIsError().GetValue() &&
		(r.GetDisallowAll().GetValue() || r.GetDisallowExpression() != nil) {
		c.add(fp+".decoder_header_mutation_rules.disallow_is_error",
			"must be true with disallow_all or disallow_expression: a removal of a client's identity header or token that the rules refuse would be dropped silently")
	}
	wb := ea.GetWithRequestBody()
	switch {
	case wb == nil:
		c.add(fp+".with_request_body", "required: mcpauthz authorizes on the JSON-RPC body")
	default:
		c.bufferSettings(wb, fp+".with_request_body")
	}
	c.headerLists(ea, fp)
}

func (c *checker) bufferSettings(wb *extauthzv3.BufferSettings, p string) {
	if wb.GetAllowPartialMessage() {
		c.add(p+".allow_partial_message", "must be false (a truncated body must not be authorized)")
	}
	if !wb.GetPackAsBytes() {
		c.add(p+".pack_as_bytes", "must be true")
	}
}

// authzLevel is the ext_authz entry of one typed_per_filter_config map.
type authzLevel struct {
	path string
	// filterDisabled is set by a FilterConfig wrapper
	// (envoy.config.route.v3.FilterConfig{disabled}).
	filterDisabled *bool
	pr             *extauthzv3.ExtAuthzPerRoute
}

// level decodes m[ext_authz] at path p (the map's path); nil when absent or
// undecodable (reported).
func (c *checker) level(m map[string]*anypb.Any, p string) *authzLevel {
	a, ok := m[extAuthzFilterName]
	if !ok {
		return nil
	}
	lp := p + "[" + extAuthzFilterName + "]"
	lv := &authzLevel{path: lp}
	var fc routev3.FilterConfig
	if a.MessageIs(&fc) {
		if a.UnmarshalTo(&fc) != nil {
			c.add(lp, "undecodable FilterConfig")
			return nil
		}
		d := fc.GetDisabled()
		lv.filterDisabled = &d
		a = fc.GetConfig()
		if a == nil {
			return lv
		}
		lp += ".config"
	}
	var pr extauthzv3.ExtAuthzPerRoute
	if a.UnmarshalTo(&pr) != nil {
		c.add(lp, "must be an ExtAuthzPerRoute")
		return nil
	}
	lv.pr = &pr
	return lv
}

// effective is ext_authz on one route (and weighted cluster) as Envoy
// resolves it: whether the filter runs from the most specific level with an
// entry (else the HTTP filter's disabled flag), the ExtAuthzPerRoute
// (disabled, check_settings) from the most specific level that has one,
// context_extensions merged from the least to the most specific level.
type effective struct {
	disabled   bool
	disabledAt string // path of the level that disables it; "" = the HTTP filter
	pr         *extauthzv3.ExtAuthzPerRoute
	prAt       string
	ctxExt     map[string]string
}

func resolve(filterDisabled bool, levels []*authzLevel) effective {
	e := effective{disabled: filterDisabled, ctxExt: map[string]string{}}
	for _, lv := range levels { // least specific first
		if lv == nil {
			continue
		}
		// Any entry decides whether the filter runs (HCM's filterDisabled):
		// a FilterConfig by its disabled flag, a bare config enables it.
		e.disabled, e.disabledAt = lv.filterDisabled != nil && *lv.filterDisabled, lv.path
		if lv.pr != nil {
			e.pr, e.prAt = lv.pr, lv.path
			for k, v := range lv.pr.GetCheckSettings().GetContextExtensions() {
				e.ctxExt[k] = v
			}
		}
	}
	if e.pr.GetDisabled() {
		e.disabled, e.disabledAt = true, e.prAt
	}
	return e
}

// routeTarget is one forwarding route (or one of its weighted clusters).
type routeTarget struct {
	path    string // route path
	cluster string
	eff     effective
	route   *routev3.Route
	vh      *routev3.VirtualHost
	rc      *routev3.RouteConfiguration
	pfcs    []pfc // typed_per_filter_config, least specific first
}

func (c *checker) routes(rc *routev3.RouteConfiguration, rcp string, filterDisabled bool, ea *extauthzv3.ExtAuthz) {
	rcLevel := c.level(rc.GetTypedPerFilterConfig(), rcp+".typed_per_filter_config")
	if rcLevel != nil && resolve(false, []*authzLevel{rcLevel}).disabled {
		c.add(rcLevel.path, "ext_authz must not be disabled for a whole route configuration")
	}
	var targets []routeTarget
	for vi, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", rcp, vi)
		vhLevel := c.level(vh.GetTypedPerFilterConfig(), vp+".typed_per_filter_config")
		if vhLevel != nil && resolve(false, []*authzLevel{vhLevel}).disabled {
			c.add(vp+".typed_per_filter_config", "ext_authz must not be disabled for a whole virtual host")
		}
		for ri, r := range vh.GetRoutes() {
			rp := fmt.Sprintf("%s.routes[%d]", vp, ri)
			c.corsPolicy(r.GetTypedPerFilterConfig(), rp+".typed_per_filter_config")
			rLevel := c.level(r.GetTypedPerFilterConfig(), rp+".typed_per_filter_config")
			levels := []*authzLevel{rcLevel, vhLevel, rLevel}
			pfcs := []pfc{{rc.GetTypedPerFilterConfig(), rcp + ".typed_per_filter_config"},
				{vh.GetTypedPerFilterConfig(), vp + ".typed_per_filter_config"}, {r.GetTypedPerFilterConfig(), rp + ".typed_per_filter_config"}}
			act := r.GetRoute()
			if act == nil {
				continue // redirect or direct response: nothing reaches an upstream
			}
			if t := act.GetTimeout(); t == nil || t.AsDuration() != 0 {
				c.add(rp+".route.timeout", "must be 0s (the default 15s would cut SSE streams)")
			}
			switch {
			case act.GetClusterHeader() != "":
				c.add(rp+".route.cluster_header", "the client would pick the upstream; mcpauthz could not know which server it authorizes")
			case act.GetClusterSpecifierPlugin() != "" || act.GetInlineClusterSpecifierPlugin() != nil:
				c.add(rp+".route", "a cluster specifier plugin picks the upstream per request; mcpauthz could not know which server it authorizes")
			case act.GetWeightedClusters() != nil:
				for wi, cw := range act.GetWeightedClusters().GetClusters() {
					wp := fmt.Sprintf("%s.route.weighted_clusters.clusters[%d]", rp, wi)
					if cw.GetClusterHeader() != "" {
						c.add(wp+".cluster_header", "the client would pick the upstream; mcpauthz could not know which server it authorizes")
						continue
					}
					wl := c.level(cw.GetTypedPerFilterConfig(), wp+".typed_per_filter_config")
					targets = append(targets, routeTarget{path: rp, cluster: cw.GetName(), route: r, vh: vh, rc: rc,
						eff:  resolve(filterDisabled, append(levels[:3:3], wl)),
						pfcs: append(pfcs[:3:3], pfc{cw.GetTypedPerFilterConfig(), wp + ".typed_per_filter_config"})})
				}
			default:
				targets = append(targets, routeTarget{path: rp, cluster: act.GetCluster(), route: r, vh: vh, rc: rc,
					eff: resolve(filterDisabled, levels), pfcs: pfcs})
			}
		}
	}
	// Clusters reached by MCP routes: no route to them may skip ext_authz.
	mcpClusters := map[string][]string{}
	for _, t := range targets {
		if !t.eff.disabled {
			mcpClusters[t.cluster] = append(mcpClusters[t.cluster], t.route.GetName())
		}
	}
	for _, t := range targets {
		if t.eff.disabled {
			c.disabledRoute(t, mcpClusters)
			continue
		}
		c.enabledRoute(t, ea)
	}
}

func (c *checker) disabledRoute(t routeTarget, mcpClusters map[string][]string) {
	if path := t.route.GetMatch().GetPath(); path == "" || !IsMetadataPath(path) {
		where := "ext_authz is disabled"
		if t.eff.disabledAt == "" {
			where = "ext_authz is disabled on the HTTP filter and not re-enabled here"
		}
		c.add(t.path+".match", "%s, which is allowed only on an exact path under %s", where, MetadataPathPrefix)
		return
	}
	if names := mcpClusters[t.cluster]; len(names) > 0 {
		sort.Strings(names)
		c.add(t.path+".route.cluster", "%q also serves MCP route(s) %s: a route without ext_authz must not reach an MCP server",
			t.cluster, strings.Join(names, ", "))
	}
}

func (c *checker) enabledRoute(t routeTarget, ea *extauthzv3.ExtAuthz) {
	c.extProcRoute(t)
	if t.eff.ctxExt["mcp_server"] == "" {
		c.add(t.path+".typed_per_filter_config", "no check_settings.context_extensions.mcp_server naming the MCP server")
	}
	cs := t.eff.pr.GetCheckSettings()
	if cs == nil {
		return
	}
	csp := t.eff.prAt + ".check_settings"
	if cs.GetDisableRequestBodyBuffering() {
		c.add(csp+".disable_request_body_buffering", "must be false: mcpauthz authorizes on the JSON-RPC body")
	}
	if wb := cs.GetWithRequestBody(); wb != nil {
		c.bufferSettings(wb, csp+".with_request_body")
	}
	switch {
	case cs.GetHttpService() != nil:
		c.add(csp+".http_service", "sends this route's checks to another (HTTP) service instead of mcpauthz")
	case cs.GetGrpcService() != nil:
		want := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		if got := cs.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got == "" || got != want {
			c.add(csp+".grpc_service", "sends this route's checks to another service than the filter's (%q)", want)
		}
	}
}

// corsPolicy flags credentials shared with origins that are not spelled out.
func (c *checker) corsPolicy(m map[string]*anypb.Any, p string) {
	a, ok := m[corsFilterName]
	if !ok {
		return
	}
	var cp corsv3.CorsPolicy
	if a.UnmarshalTo(&cp) != nil || !cp.GetAllowCredentials().GetValue() {
		return
	}
	for i, o := range cp.GetAllowOriginStringMatch() {
		if o.GetExact() == "" || o.GetExact() == "*" {
			c.add(fmt.Sprintf("%s[%s].allow_origin_string_match[%d]", p, corsFilterName, i),
				"with allow_credentials only exact origins may be allowed")
		}
	}
}
