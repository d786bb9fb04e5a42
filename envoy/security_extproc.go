package envoy

import (
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// extProcInfo is what the HTTP filter list says about ext_proc.
type extProcInfo struct {
	present  bool
	disabled bool // the HTTP filter entry's disabled flag
	cluster  string
}

// extProcFilter checks the ext_proc HTTP filter's typed_config at fp.
func (c *checker) extProcFilter(x *extprocv3.ExternalProcessor, fp string, ea *extauthzv3.ExtAuthz) {
	gs := x.GetGrpcService()
	switch {
	case gs == nil:
		c.add(fp+".grpc_service", "mcpauthz serves ext_proc over gRPC (an http_service cannot see bodies)")
	case gs.GetTimeout().AsDuration() != 0:
		c.add(fp+".grpc_service.timeout", "must be unset: it would bound whole streams and cut SSE responses")
	}
	if want := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName(); gs != nil && want != "" && gs.GetEnvoyGrpc().GetClusterName() != want {
		c.add(fp+".grpc_service", "must send to the ext_authz cluster %q: the processor reads mcpauthz's own decisions", want)
	}
	if x.GetFailureModeAllow() {
		c.add(fp+".failure_mode_allow", "must be false (fail closed): an unreachable processor would let unfiltered lists through")
	}
	pm := x.GetProcessingMode()
	if pm.GetRequestHeaderMode() == extprocv3.ProcessingMode_SKIP {
		c.add(fp+".processing_mode.request_header_mode", "must be SEND: mcpauthz reads the ext_authz hand-off and legacy list requests there")
	}
	if pm.GetResponseHeaderMode() == extprocv3.ProcessingMode_SKIP {
		c.add(fp+".processing_mode.response_header_mode", "must be SEND: mcpauthz decides there which responses it filters")
	}
	if !x.GetAllowModeOverride() {
		c.add(fp+".allow_mode_override", "must be true: mcpauthz asks for list bodies per response, and they would pass unfiltered")
	}
	if len(x.GetAllowedOverrideModes()) > 0 {
		c.add(fp+".allowed_override_modes", "must be unset: mcpauthz switches response bodies to BUFFERED or STREAMED")
	}
	if x.GetSendBodyWithoutWaitingForHeaderResponse() {
		c.add(fp+".send_body_without_waiting_for_header_response", "must be false: it disables mode overrides, so lists would pass unfiltered")
	}
	if x.GetObservabilityMode() {
		c.add(fp+".observability_mode", "must be false: in observability mode the processor's answers are ignored")
	}
	if x.GetDisableImmediateResponse() {
		c.add(fp+".disable_immediate_response", "must be false: mcpauthz fails closed with an immediate response")
	}
	if x.GetForwardRules() != nil {
		c.add(fp+".forward_rules", "must be unset: the processor reads content-type, content-encoding and mcp-session-id")
	}
	if s := x.GetStatusOnError(); s != nil && int32(s.GetCode()) < 400 {
		c.add(fp+".status_on_error.code", "must be 4xx or 5xx, got %d: an error must never look like a success", int32(s.GetCode()))
	}
	if !slices.Contains(x.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), ExtAuthzMetadataNamespace) {
		c.add(fp+".metadata_options.forwarding_namespaces.untyped", "must list %q: the ext_authz decision reaches the processor only that way", ExtAuthzMetadataNamespace)
	}
}

// pfc is one typed_per_filter_config map on a route's path.
type pfc struct {
	m    map[string]*anypb.Any
	path string
}

// extProcRoute checks ext_proc and accept-encoding on one MCP route.
func (c *checker) extProcRoute(t routeTarget) {
	if !c.xp.present {
		return
	}
	disabled, at := c.xp.disabled, ""
	for _, lv := range t.pfcs {
		a, ok := lv.m[ExtProcFilterName]
		if !ok {
			continue
		}
		lp := lv.path + "[" + ExtProcFilterName + "]"
		disabled, at = false, lp // any entry runs the filter here
		var fc routev3.FilterConfig
		if a.MessageIs(&fc) {
			if a.UnmarshalTo(&fc) != nil {
				c.add(lp, "undecodable FilterConfig")
				continue
			}
			disabled = fc.GetDisabled()
			if a = fc.GetConfig(); a == nil {
				continue
			}
			lp += ".config"
		}
		var pr extprocv3.ExtProcPerRoute
		if a.UnmarshalTo(&pr) != nil {
			c.add(lp, "must be an ExtProcPerRoute")
			continue
		}
		if pr.GetDisabled() {
			disabled = true
			continue
		}
		c.extProcOverrides(pr.GetOverrides(), lp+".overrides")
	}
	if disabled {
		where := at
		if where == "" {
			where = t.path
		}
		c.add(where, "ext_proc is off on MCP route %q: its lists would reach clients unfiltered", t.route.GetName())
	}
	if !identityEncoding(t.route.GetRequestHeadersToAdd(), t.route.GetRequestHeadersToRemove()) &&
		!identityEncoding(t.vh.GetRequestHeadersToAdd(), t.vh.GetRequestHeadersToRemove()) &&
		!identityEncoding(t.rc.GetRequestHeadersToAdd(), t.rc.GetRequestHeadersToRemove()) {
		c.add(t.path+".request_headers_to_add", `must set accept-encoding: identity (OVERWRITE_IF_EXISTS_OR_ADD) or remove accept-encoding: compressed lists cannot be filtered and fail`)
	}
}

func (c *checker) extProcOverrides(o *extprocv3.ExtProcOverrides, p string) {
	if o == nil {
		return
	}
	if pm := o.GetProcessingMode(); pm.GetRequestHeaderMode() == extprocv3.ProcessingMode_SKIP || pm.GetResponseHeaderMode() == extprocv3.ProcessingMode_SKIP {
		c.add(p+".processing_mode", "headers must be SENT both ways on MCP routes")
	}
	if gs := o.GetGrpcService(); gs != nil && gs.GetEnvoyGrpc().GetClusterName() != c.xp.cluster {
		c.add(p+".grpc_service", "sends this route's responses to another processor than the filter's (%q)", c.xp.cluster)
	}
	if ns := o.GetMetadataOptions().GetForwardingNamespaces(); ns != nil && !slices.Contains(ns.GetUntyped(), ExtAuthzMetadataNamespace) {
		c.add(p+".metadata_options.forwarding_namespaces.untyped", "must list %q", ExtAuthzMetadataNamespace)
	}
}

// identityEncoding reports a header list that makes the upstream see
// accept-encoding: identity (or none) whatever the client sent.
func identityEncoding(add []*corev3.HeaderValueOption, remove []string) bool {
	for _, r := range remove {
		if strings.EqualFold(r, "accept-encoding") {
			return true
		}
	}
	for _, o := range add {
		if !strings.EqualFold(o.GetHeader().GetKey(), "accept-encoding") || !strings.EqualFold(headerOptionValue(o), "identity") {
			continue
		}
		if ap := o.GetAppend(); ap != nil {
			return !ap.GetValue()
		}
		if o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			return true
		}
	}
	return false
}

func headerOptionValue(o *corev3.HeaderValueOption) string {
	if v := o.GetHeader().GetValue(); v != "" {
		return v
	}
	return string(o.GetHeader().GetRawValue())
}

// describeExtProc is used in messages about filter order.
func describeExtProc() string { return fmt.Sprintf("%s (list filtering)", ExtProcFilterName) }
