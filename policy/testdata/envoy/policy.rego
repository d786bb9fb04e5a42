# An OPA-Envoy style policy (github.com/open-policy-agent/opa-envoy-plugin
# examples), unchanged except for the package: it returns the
# envoy.authz.allow object shape with `allowed`, `headers`, `http_status`,
# `body`, `request_headers_to_remove` and `response_headers_to_add`.
package envoy.authz

default allow := {
	"allowed": false,
	"headers": {"x-ext-auth-allow": "no"},
	"body": "Unauthorized Request",
	"http_status": 403,
}

allow := response if {
	input.principal.subject == "alice"
	response := {
		"allowed": true,
		"headers": {"x-ext-auth-allow": "yes", "x-current-user": input.principal.subject},
		"request_headers_to_remove": ["authorization", "x-user"],
		"response_headers_to_add": {"x-policy": "envoy"},
	}
}
