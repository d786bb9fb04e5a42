package envoy

import (
	"strings"
	"testing"
)

// strictBase is a small bootstrap that passes every strict check: a CORS
// filter, ext_authz, ext_proc and the router; an exact metadata route
// without ext_authz and ext_proc and one MCP route.
const strictBase = `admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 9901 }
static_resources:
  listeners:
  - name: mcp_ingress
    address:
      socket_address: { address: 0.0.0.0, port_value: 10000 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mcp_ingress
          normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: REJECT_REQUEST
          common_http_protocol_options:
            idle_timeout: 3600s
            headers_with_underscores_action: REJECT_REQUEST
          route_config:
            name: mcp
            virtual_hosts:
            - name: mcp
              domains: ["*"]
              routes:
              - name: metadata
                match: { path: "/.well-known/oauth-protected-resource/docs/mcp" }
                route: { cluster: mcpauthz_http, timeout: 0s }
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    disabled: true
                  envoy.filters.http.ext_proc:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                    disabled: true
              - name: docs
                match: { prefix: "/docs/" }
                route: { cluster: upstream_docs, timeout: 0s }
                request_headers_to_add: [{ header: { key: accept-encoding, value: identity }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }]
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    check_settings:
                      context_extensions: { mcp_server: docs }
                  envoy.filters.http.cors:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                    allow_origin_string_match: [{ exact: "https://chat.example.com" }]
          http_filters:
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              grpc_service:
                envoy_grpc: { cluster_name: mcpauthz }
              with_request_body:
                max_request_bytes: 1048576
                allow_partial_message: false
                pack_as_bytes: true
              failure_mode_allow: false
              include_peer_certificate: true
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service: { envoy_grpc: { cluster_name: mcpauthz } }
              processing_mode: { request_header_mode: SEND, response_header_mode: SEND }
              allow_mode_override: true
              metadata_options: { forwarding_namespaces: { untyped: ["envoy.filters.http.ext_authz"] } }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: mcpauthz
    type: STATIC
    load_assignment:
      cluster_name: mcpauthz
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 9191 } } } }] }]
  - name: mcpauthz_http
    type: STATIC
    load_assignment:
      cluster_name: mcpauthz_http
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8181 } } } }] }]
  - name: upstream_docs
    type: STATIC
    load_assignment:
      cluster_name: upstream_docs
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8000 } } } }] }]
`

// Anchors in strictBase that rows edit.
const (
	hcmPath   = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
	authzPath = hcmPath + ".http_filters[1].typed_config"
	procPath  = hcmPath + ".http_filters[2].typed_config"
	vhPath    = hcmPath + ".route_config.virtual_hosts[0]"
	docsRoute = vhPath + ".routes[1]"
	metaRoute = vhPath + ".routes[0]"

	authzCfg  = "              failure_mode_allow: false\n" // a line inside ext_authz's typed_config
	docsCS    = "                      context_extensions: { mcp_server: docs }\n"
	procCfg   = "              allow_mode_override: true\n" // a line inside ext_proc's typed_config
	procBlock = "          - name: envoy.filters.http.ext_proc\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor\n              grpc_service: { envoy_grpc: { cluster_name: mcpauthz } }\n              processing_mode: { request_header_mode: SEND, response_header_mode: SEND }\n" + procCfg + "              metadata_options: { forwarding_namespaces: { untyped: [\"envoy.filters.http.ext_authz\"] } }\n"
	docsAE    = "                request_headers_to_add: [{ header: { key: accept-encoding, value: identity }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }]\n"
	docsPFC   = "                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    check_settings:\n"
)

// strictRow is one strict finding: the edit (old -> new, applied once),
// where the finding must be (a substring of its path) with what message,
// on the line of strictBase+edit that carries the "#!" marker.
type strictRow struct {
	name     string
	old, new string
	more     [][2]string // further edits (old, new)
	opts     StrictOptions
	path     string // "" = the edit must produce no finding at all
	message  string
}

var strictRows = []strictRow{
	// allowed_headers / disallowed_headers.
	{name: "allowed_headers without authorization",
		old: authzCfg, new: authzCfg + "              allowed_headers: #!\n                patterns: [{ exact: content-type }, { exact: mcp-session-id }]\n",
		path: authzPath + ".allowed_headers", message: "hides authorization, proxy-authorization, cookie, origin"},
	{name: "allowed_headers without the identity prefix",
		old: authzCfg, new: authzCfg + "              allowed_headers: #!\n                patterns: [{ safe_regex: { regex: \"authorization|proxy-authorization|cookie|origin|content-type|mcp-.*|x-envoy-auth-partial-body\" } }]\n",
		path: authzPath + ".allowed_headers", message: "hides x-mcp-*"},
	{name: "allowed_headers listing every required header but not others",
		old: authzCfg, new: authzCfg + "              allowed_headers: #!\n                patterns: [{ safe_regex: { regex: \"authorization|proxy-authorization|cookie|origin|content-type|mcp-.*|x-envoy-auth-partial-body|x-mcp-.*\" } }]\n",
		path: authzPath + ".allowed_headers", message: "does not match every header"},
	{name: "allowed_headers matching everything",
		old: authzCfg, new: authzCfg + "              allowed_headers: { patterns: [{ safe_regex: { regex: \".*\" } }] }\n"},
	{name: "allowed_headers in upper case without ignore_case",
		old: authzCfg, new: authzCfg + "              allowed_headers: { patterns: [{ safe_regex: { regex: \".*\" } }, { exact: Cookie }] }\n"},
	{name: "disallowed mcp-session-id",
		old: authzCfg, new: authzCfg + "              disallowed_headers:\n                patterns:\n                - { exact: x-debug }\n                - { exact: mcp-session-id } #!\n",
		path: authzPath + ".disallowed_headers.patterns[1]", message: "hides mcp-session-id"},
	{name: "disallowed Authorization ignoring case",
		old: authzCfg, new: authzCfg + "              disallowed_headers: { patterns: [{ exact: Authorization, ignore_case: true }] } #!\n",
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides authorization"},
	{name: "disallowed identity prefix",
		old: authzCfg, new: authzCfg + "              disallowed_headers:\n                patterns: [{ prefix: x-mcp- }] #!\n",
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides x-mcp-*"},
	{name: "disallowed one identity header",
		old: authzCfg, new: authzCfg + "              disallowed_headers:\n                patterns: [{ exact: x-mcp-subject }] #!\n",
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides x-mcp-*"},
	{name: "disallowed x- prefix",
		old: authzCfg, new: authzCfg + "              disallowed_headers:\n                patterns: [{ prefix: x- }] #!\n",
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides x-envoy-auth-partial-body, x-mcp-*"},
	{name: "disallowed parameter mirrors by regex",
		old: authzCfg, new: authzCfg + "              disallowed_headers:\n                patterns: [{ safe_regex: { regex: \"mcp-param-.+\" } }] #!\n",
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides mcp-param-*"},
	{name: "disallowed cookie by suffix",
		old: authzCfg, new: authzCfg + "              disallowed_headers:\n                patterns: [{ suffix: okie }] #!\n",
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides cookie"},
	{name: "disallowed unrelated header",
		old: authzCfg, new: authzCfg + "              disallowed_headers: { patterns: [{ exact: x-debug }, { prefix: x-b3- }] }\n"},
	{name: "disallowed headers.strip entry",
		old: authzCfg, new: authzCfg + "              disallowed_headers: { patterns: [{ exact: x-user-id }] } #!\n",
		opts: StrictOptions{StripHeaders: []string{"X-User-Id"}},
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides x-user-id"},
	{name: "disallowed configured identity prefix",
		old: authzCfg, new: authzCfg + "              disallowed_headers: { patterns: [{ prefix: x-auth-sub }] } #!\n",
		opts: StrictOptions{IdentityHeaderPrefix: "X-Auth-"},
		path: authzPath + ".disallowed_headers.patterns[0]", message: "hides x-auth-*"},

	// headers_with_underscores_action.
	{name: "underscores allowed",
		old: "headers_with_underscores_action: REJECT_REQUEST\n", new: "headers_with_underscores_action: ALLOW #!\n",
		path: hcmPath + ".common_http_protocol_options.headers_with_underscores_action", message: "must be REJECT_REQUEST, got ALLOW"},
	{name: "underscores dropped",
		old: "headers_with_underscores_action: REJECT_REQUEST\n", new: "headers_with_underscores_action: DROP_HEADER #!\n",
		path: hcmPath + ".common_http_protocol_options.headers_with_underscores_action", message: "got DROP_HEADER"},
	{name: "underscores action missing",
		old:  "          common_http_protocol_options:\n            idle_timeout: 3600s\n            headers_with_underscores_action: REJECT_REQUEST\n",
		new:  "          common_http_protocol_options: #!\n            idle_timeout: 3600s\n",
		path: hcmPath + ".common_http_protocol_options.headers_with_underscores_action", message: "x_mcp_subject"},

	// ext_authz settings that let requests through without a decision.
	{name: "fail open", old: "failure_mode_allow: false\n", new: "failure_mode_allow: true #!\n",
		path: authzPath + ".failure_mode_allow", message: "fail closed"},
	{name: "failure mode header", old: authzCfg, new: authzCfg + "              failure_mode_allow_header_add: true #!\n",
		path: authzPath + ".failure_mode_allow_header_add", message: "must be false"},
	{name: "filter_enabled without deny_at_disable",
		old: authzCfg, new: authzCfg + "              filter_enabled: #!\n                default_value: { numerator: 100 }\n                runtime_key: ext_authz.enabled\n",
		path: authzPath + ".filter_enabled", message: "deny_at_disable"},
	{name: "filter_enabled with deny_at_disable false",
		old: authzCfg, new: authzCfg + "              filter_enabled: { default_value: { numerator: 50 } } #!\n              deny_at_disable: { default_value: false }\n",
		path: authzPath + ".filter_enabled", message: "deny_at_disable"},
	{name: "filter_enabled denying at disable",
		old: authzCfg, new: authzCfg + "              filter_enabled: { default_value: { numerator: 50 } }\n              deny_at_disable: { default_value: true }\n"},
	{name: "filter_enabled_metadata without deny_at_disable",
		old: authzCfg, new: authzCfg + "              filter_enabled_metadata: #!\n                filter: envoy.filters.http.jwt_authn\n                path: [{ key: verified }]\n                value: { bool_match: true }\n",
		path: authzPath + ".filter_enabled_metadata", message: "do" + "es not match pass without a decision"},
	{name: "deny_at_disable false",
		old: authzCfg, new: authzCfg + "              deny_at_disable:\n                default_value: false #!\n",
		path: authzPath + ".deny_at_disable.default_value", message: "must be true"},
	{name: "shadow mode", old: authzCfg, new: authzCfg + "              shadow_mode: true #!\n",
		path: authzPath + ".shadow_mode", message: "never refuses"},
	{name: "status_on_error 200", old: authzCfg, new: authzCfg + "              status_on_error: { code: OK } #!\n",
		path: authzPath + ".status_on_error.code", message: "got 200"},
	{name: "status_on_error 503", old: authzCfg, new: authzCfg + "              status_on_error: { code: ServiceUnavailable }\n"},
	{name: "clear_route_cache", old: authzCfg, new: authzCfg + "              clear_route_cache: true #!\n",
		path: authzPath + ".clear_route_cache", message: "after mcpauthz decided"},
	{name: "mutation rules dropping silently",
		old: authzCfg, new: authzCfg + "              decoder_header_mutation_rules: #!\n                disallow_all: true\n",
		path: authzPath + ".decoder_header_mutation_rules.disallow_is_error", message: "dropped silently"},
	{name: "mutation rules failing loudly",
		old: authzCfg, new: authzCfg + "              decoder_header_mutation_rules: { disallow_all: true, disallow_is_error: true }\n"},
	{name: "no request body",
		old: "              with_request_body:\n                max_request_bytes: 1048576\n                allow_partial_message: false\n                pack_as_bytes: true\n",
		new: "",
		// Reported at the nearest spelled-out ancestor: the filter's typed_config key.
		more: [][2]string{{"          - name: envoy.filters.http.ext_authz\n            typed_config:\n", "          - name: envoy.filters.http.ext_authz\n            typed_config: #!\n"}},
		path: authzPath + ".with_request_body", message: "required"},
	{name: "partial body", old: "allow_partial_message: false\n", new: "allow_partial_message: true #!\n",
		path: authzPath + ".with_request_body.allow_partial_message", message: "truncated body"},
	{name: "CORS after ext_authz",
		old:  "          - name: envoy.filters.http.cors\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n",
		new:  "",
		more: [][2]string{{"          - name: envoy.filters.http.router\n", "          - name: envoy.filters.http.cors #!\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n          - name: envoy.filters.http.router\n"}},
		path: hcmPath + ".http_filters[2]", message: "must come before"},

	// ext_proc.
	{name: "no ext_proc", old: procBlock, new: "",
		more: [][2]string{{"          http_filters:\n", "          http_filters: #!\n"}},
		path: hcmPath + ".http_filters", message: "no envoy.filters.http.ext_proc filter"},
	{name: "no ext_proc, accepted", old: procBlock, new: "", more: [][2]string{{docsAE, ""}}, opts: StrictOptions{ExtProcOptional: true}},
	{name: "ext_proc fails open", old: procCfg, new: procCfg + "              failure_mode_allow: true #!\n",
		path: procPath + ".failure_mode_allow", message: "unfiltered lists"},
	{name: "no mode override", old: procCfg, new: "              allow_mode_override: false #!\n",
		path: procPath + ".allow_mode_override", message: "must be true"},
	{name: "limited override modes", old: procCfg, new: procCfg + "              allowed_override_modes: [{ response_body_mode: BUFFERED }] #!\n",
		path: procPath + ".allowed_override_modes", message: "must be unset"},
	{name: "response headers skipped",
		old: "processing_mode: { request_header_mode: SEND, response_header_mode: SEND }\n", new: "processing_mode: { request_header_mode: SEND, response_header_mode: SKIP } #!\n",
		path: procPath + ".processing_mode.response_header_mode", message: "must be SEND"},
	{name: "request headers skipped",
		old: "processing_mode: { request_header_mode: SEND, response_header_mode: SEND }\n", new: "processing_mode: { request_header_mode: SKIP } #!\n",
		path: procPath + ".processing_mode.request_header_mode", message: "must be SEND"},
	{name: "observability mode", old: procCfg, new: procCfg + "              observability_mode: true #!\n",
		path: procPath + ".observability_mode", message: "ignored"},
	{name: "body without waiting", old: procCfg, new: procCfg + "              send_body_without_waiting_for_header_response: true #!\n",
		path: procPath + ".send_body_without_waiting_for_header_response", message: "mode overrides"},
	{name: "immediate responses disabled", old: procCfg, new: procCfg + "              disable_immediate_response: true #!\n",
		path: procPath + ".disable_immediate_response", message: "fails closed"},
	{name: "forward rules", old: procCfg, new: procCfg + "              forward_rules: { allowed_headers: { patterns: [{ exact: x }] } } #!\n",
		path: procPath + ".forward_rules", message: "content-type"},
	{name: "ext_proc status_on_error 200", old: procCfg, new: procCfg + "              status_on_error: { code: OK } #!\n",
		path: procPath + ".status_on_error.code", message: "got 200"},
	{name: "stream timeout", old: "grpc_service: { envoy_grpc: { cluster_name: mcpauthz } }\n              processing_mode",
		new:  "grpc_service: { envoy_grpc: { cluster_name: mcpauthz }, timeout: 1s } #!\n              processing_mode",
		path: procPath + ".grpc_service.timeout", message: "cut SSE"},
	{name: "another processor", old: "grpc_service: { envoy_grpc: { cluster_name: mcpauthz } }\n              processing_mode",
		new:  "grpc_service: { envoy_grpc: { cluster_name: upstream_docs } } #!\n              processing_mode",
		path: procPath + ".grpc_service", message: "ext_authz cluster"},
	{name: "ext_authz metadata not forwarded", old: `untyped: ["envoy.filters.http.ext_authz"] } }` + "\n", new: `untyped: ["other"] } } #!` + "\n",
		path: procPath + ".metadata_options.forwarding_namespaces.untyped", message: "must list"},
	{name: "ext_proc before ext_authz", old: procBlock, new: "",
		more: [][2]string{{"          - name: envoy.filters.http.ext_authz\n", strings.Replace(procBlock, "ext_proc\n", "ext_proc #!\n", 1) + "          - name: envoy.filters.http.ext_authz\n"}},
		path: hcmPath + ".http_filters[1]", message: "must come after"},
	{name: "ext_proc after the router", old: procBlock, new: "",
		more: [][2]string{{"  clusters:\n", strings.Replace(procBlock, "ext_proc\n", "ext_proc #!\n", 1) + "  clusters:\n"}},
		path: hcmPath + ".http_filters[3]", message: "before the router"},
	{name: "ext_proc disabled on the MCP route", old: docsPFC,
		new:  "                typed_per_filter_config:\n                  envoy.filters.http.ext_proc: #!\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute\n                    disabled: true\n" + docsPFC[len("                typed_per_filter_config:\n"):],
		path: docsRoute + ".typed_per_filter_config[envoy.filters.http.ext_proc]", message: "off on MCP route"},
	{name: "ext_proc disabled for the virtual host",
		old:  "              domains: [\"*\"]\n",
		new:  "              domains: [\"*\"]\n              typed_per_filter_config:\n                envoy.filters.http.ext_proc: #!\n                  \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                  disabled: true\n",
		path: vhPath + ".typed_per_filter_config[envoy.filters.http.ext_proc]", message: "off on MCP route \"docs\""},
	{name: "ext_proc HTTP filter disabled",
		old: "          - name: envoy.filters.http.ext_proc\n", new: "          - name: envoy.filters.http.ext_proc\n            disabled: true\n",
		more: [][2]string{{"              - name: docs\n", "              - name: docs #!\n"}},
		path: docsRoute, message: "off on MCP route"},
	{name: "ext_proc re-enabled on the MCP route",
		old: "          - name: envoy.filters.http.ext_proc\n", new: "          - name: envoy.filters.http.ext_proc\n            disabled: true\n",
		more: [][2]string{{docsPFC, "                typed_per_filter_config:\n                  envoy.filters.http.ext_proc:\n                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    disabled: false\n" + docsPFC[len("                typed_per_filter_config:\n"):]}}},
	{name: "ext_proc overrides skip headers", old: docsPFC,
		new:  "                typed_per_filter_config:\n                  envoy.filters.http.ext_proc:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute\n                    overrides: { processing_mode: { response_header_mode: SKIP } } #!\n" + docsPFC[len("                typed_per_filter_config:\n"):],
		path: docsRoute + ".typed_per_filter_config[envoy.filters.http.ext_proc].overrides.processing_mode", message: "SENT both ways"},
	{name: "no identity accept-encoding", old: docsAE, new: "",
		more: [][2]string{{"              - name: docs\n", "              - name: docs #!\n"}},
		path: docsRoute + ".request_headers_to_add", message: "accept-encoding: identity"},
	{name: "accept-encoding appended", old: "append_action: OVERWRITE_IF_EXISTS_OR_ADD }]\n", new: "append_action: APPEND_IF_EXISTS_OR_ADD }] #!\n",
		path: docsRoute + ".request_headers_to_add", message: "OVERWRITE_IF_EXISTS_OR_ADD"},
	{name: "accept-encoding removed instead", old: docsAE, new: "                request_headers_to_remove: [Accept-Encoding]\n"},
	{name: "identity on the virtual host", old: docsAE, new: "",
		more: [][2]string{{"              domains: [\"*\"]\n", "              domains: [\"*\"]\n              request_headers_to_add: [{ header: { key: accept-encoding, value: identity }, append: false }]\n"}}},

	// Routes.
	{name: "ExtAuthzPerRoute disabled on the MCP route",
		old: "                    check_settings:\n" + docsCS, new: "                    disabled: true\n",
		more: [][2]string{{"                match: { prefix: \"/docs/\" }\n", "                match: { prefix: \"/docs/\" } #!\n"}},
		path: docsRoute + ".match", message: "only on an exact path"},
	{name: "FilterConfig disabled on the MCP route",
		old:  docsPFC + docsCS,
		new:  "                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    disabled: true\n",
		more: [][2]string{{"                match: { prefix: \"/docs/\" }\n", "                match: { prefix: \"/docs/\" } #!\n"}},
		path: docsRoute + ".match", message: "only on an exact path"},
	{name: "disabled for the virtual host",
		old:  "              domains: [\"*\"]\n",
		new:  "              domains: [\"*\"]\n              typed_per_filter_config: #!\n                envoy.filters.http.ext_authz:\n                  \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                  disabled: true\n",
		path: vhPath + ".typed_per_filter_config", message: "whole virtual host"},
	{name: "disabled for the route configuration",
		old:  "            name: mcp\n",
		new:  "            name: mcp\n            typed_per_filter_config:\n              envoy.filters.http.ext_authz: #!\n                \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                disabled: true\n",
		path: hcmPath + ".route_config.typed_per_filter_config[envoy.filters.http.ext_authz]", message: "whole route configuration"},
	{name: "metadata path routed to the MCP cluster",
		old: "route: { cluster: mcpauthz_http, timeout: 0s }\n", new: "route: { cluster: upstream_docs, timeout: 0s } #!\n",
		path: metaRoute + ".route.cluster", message: "also serves MCP route(s) docs"},
	{name: "no mcp_server",
		old:  docsPFC + docsCS,
		new:  "                typed_per_filter_config: #!\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    check_settings:\n                      context_extensions: { tier: gold }\n",
		path: docsRoute + ".typed_per_filter_config", message: "mcp_server"},
	{name: "mcp_server merged from the virtual host",
		old: docsCS, new: "                      context_extensions: { tier: gold }\n",
		more: [][2]string{{"              domains: [\"*\"]\n", "              domains: [\"*\"]\n              typed_per_filter_config:\n                envoy.filters.http.ext_authz:\n                  \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                  check_settings: { context_extensions: { mcp_server: docs } }\n"}}},
	{name: "HTTP filter disabled, re-enabled by the route",
		old: "          - name: envoy.filters.http.ext_authz\n", new: "          - name: envoy.filters.http.ext_authz\n            disabled: true #!\n",
		// Only the filter-level finding: the MCP route's own entry enables it.
		path: hcmPath + ".http_filters[1].disabled", message: "must be false"},
	{name: "HTTP filter disabled, not re-enabled by a route",
		old: "          - name: envoy.filters.http.ext_authz\n", new: "          - name: envoy.filters.http.ext_authz\n            disabled: true\n",
		more: [][2]string{{docsPFC + docsCS, "                typed_per_filter_config:\n"},
			{"                match: { prefix: \"/docs/\" }\n", "                match: { prefix: \"/docs/\" } #!\n"}},
		path: docsRoute + ".match", message: "not re-enabled here"},
	{name: "no body for this route",
		old: docsCS, new: docsCS + "                      disable_request_body_buffering: true #!\n",
		path: docsRoute + ".typed_per_filter_config[envoy.filters.http.ext_authz].check_settings.disable_request_body_buffering", message: "JSON-RPC body"},
	{name: "partial body for this route",
		old: docsCS, new: docsCS + "                      with_request_body: { max_request_bytes: 10, allow_partial_message: true, pack_as_bytes: true } #!\n",
		path: docsRoute + ".typed_per_filter_config[envoy.filters.http.ext_authz].check_settings.with_request_body.allow_partial_message", message: "truncated"},
	{name: "checks sent elsewhere for this route",
		old: docsCS, new: docsCS + "                      grpc_service: { envoy_grpc: { cluster_name: other_authz } } #!\n",
		path: docsRoute + ".typed_per_filter_config[envoy.filters.http.ext_authz].check_settings.grpc_service", message: "another service"},
	{name: "client picks the cluster",
		old: "route: { cluster: upstream_docs, timeout: 0s }\n", new: "route: { cluster_header: x-cluster, timeout: 0s } #!\n",
		path: docsRoute + ".route.cluster_header", message: "the client would pick"},
	{name: "weighted cluster without ext_authz",
		old:  "                match: { prefix: \"/docs/\" }\n                route: { cluster: upstream_docs, timeout: 0s }\n",
		new:  "                match: { prefix: \"/docs/\" } #!\n                route:\n                  timeout: 0s\n                  weighted_clusters:\n                    clusters:\n                    - name: upstream_docs\n                      weight: 1\n                      typed_per_filter_config:\n                        envoy.filters.http.ext_authz:\n                          \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                          disabled: true\n",
		path: docsRoute + ".match", message: "only on an exact path"},
	{name: "route timeout", old: "route: { cluster: upstream_docs, timeout: 0s }\n", new: "route: { cluster: upstream_docs, timeout: 15s } #!\n",
		path: docsRoute + ".route.timeout", message: "must be 0s"},
	{name: "CORS credentials with a regex origin",
		old:  "allow_origin_string_match: [{ exact: \"https://chat.example.com\" }]\n",
		new:  "allow_credentials: true\n                    allow_origin_string_match:\n                    - { exact: \"https://chat.example.com\" }\n                    - { safe_regex: { regex: \"https://.*\" } } #!\n",
		path: docsRoute + ".typed_per_filter_config[envoy.filters.http.cors].allow_origin_string_match[1]", message: "only exact origins"},
}

func TestStrictBaseIsClean(t *testing.T) {
	d, err := ParseBootstrapDocument([]byte(strictBase))
	if err != nil {
		t.Fatal(err)
	}
	if issues := d.SecurityIssues(StrictOptions{}); len(issues) > 0 {
		t.Fatalf("strictBase has findings: %v", issues)
	}
}

func TestStrictFindings(t *testing.T) {
	for _, row := range strictRows {
		t.Run(row.name, func(t *testing.T) {
			doc := strictBase
			for _, e := range append([][2]string{{row.old, row.new}}, row.more...) {
				if n := strings.Count(doc, e[0]); n != 1 {
					t.Fatalf("anchor %q occurs %d times", e[0], n)
				}
				doc = strings.Replace(doc, e[0], e[1], 1)
			}
			d, err := ParseBootstrapDocument([]byte(doc))
			if err != nil {
				t.Fatalf("edit must stay schema-valid: %v\n%s", err, doc)
			}
			issues := d.SecurityIssues(row.opts)
			if row.path == "" {
				if len(issues) > 0 {
					t.Fatalf("want no finding, got %v", issues)
				}
				return
			}
			wantLine := markerLine(doc)
			if wantLine == 0 {
				t.Fatal("row has no #! marker")
			}
			for _, is := range issues {
				if is.Path == row.path && strings.Contains(is.Message, row.message) {
					if is.Line != wantLine {
						t.Errorf("line %d, want %d (%v)", is.Line, wantLine, is)
					}
					return
				}
			}
			t.Fatalf("no finding at %s with %q in:\n%s", row.path, row.message, joinIssues(issues))
		})
	}
}

// markerLine is the 1-based line carrying "#!", or 0.
func markerLine(doc string) int {
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, "#!") {
			return i + 1
		}
	}
	return 0
}

func joinIssues(is []Issue) string {
	s := make([]string, len(is))
	for i, x := range is {
		s[i] = x.String()
	}
	return strings.Join(s, "\n")
}

// SecurityIssues (no Document) reports the same findings without lines.
func TestSecurityIssuesWithoutLines(t *testing.T) {
	b, err := ParseBootstrapYAML([]byte(strings.Replace(strictBase, "failure_mode_allow: false", "failure_mode_allow: true", 1)))
	if err != nil {
		t.Fatal(err)
	}
	is := SecurityIssues(b)
	if len(is) != 1 || is[0].Path != authzPath+".failure_mode_allow" || is[0].Line != 0 {
		t.Fatalf("SecurityIssues = %v", is)
	}
}

// TestUncheckableHeaderMatcher: a matcher the validator cannot evaluate is
// reported rather than assumed harmless.
func TestUncheckableHeaderMatcher(t *testing.T) {
	d, err := ParseBootstrapDocument([]byte(strings.Replace(strictBase, authzCfg, authzCfg+
		"              disallowed_headers: { patterns: [{ safe_regex: { regex: \"(?<=x)y\" } }] }\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	is := d.SecurityIssues(StrictOptions{})
	if len(is) != 1 || !strings.Contains(is[0].Message, "cannot be checked") {
		t.Fatalf("a regex Go cannot read must be reported: %v", is)
	}
}
