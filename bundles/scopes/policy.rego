# OAuth scopes per tool, per server, with downscoped upstream grants and a
# data-driven choice of upstream credential.
#
#   - every tool (and non-tool method such as resources/read) of a server
#     needs the scopes listed in data.mcpauthz.scopes.servers[id];
#   - a token lacking any of them is denied with required_scopes (all the
#     scopes the call needs), which mcpauthz answers with 403 and a
#     WWW-Authenticate insufficient_scope challenge;
#   - an allowed call is granted only the downstream scopes of that tool
#     (decision.scopes), never everything the token carries;
#   - decision.credential picks the upstream credential mode per caller kind
#     (e.g. agents alone -> service_account, agents for users -> delegated)
#     when the server offers that mode (input.server.credential_modes).
#
# Input: mcpauthz.input/v1. Output: data.mcpauthz.decision
# (mcpauthz.decision/v1). All facts live in data.mcpauthz.scopes.
package mcpauthz

cfg := data.mcpauthz.scopes

srv := cfg.servers[input.server.id]

is_tool_call if input.mcp.method == "tools/call"

# What the call is, for messages: the tool name or the method.
operation := input.mcp.tool if {
	is_tool_call
} else := input.mcp.method

required := srv.tools[input.mcp.tool] if {
	is_tool_call
} else := srv.methods[input.mcp.method] if {
	not is_tool_call
}

# Downstream scopes: the tool's own mapping, else the required scopes.
downstream := srv.downstream[input.mcp.tool] if {
	is_tool_call
} else := required

missing contains s if {
	some s in required
	not s in token_scopes
}

token_scopes := {s | some s in input.principal.scopes}

# --- the decision -----------------------------------------------------------

decision := sc_deny("unauthenticated", "authentication is required", 401) if {
	not sc_authenticated
} else := sc_allow("housekeeping", [], []) if {
	sc_housekeeping
} else := sc_deny("unknown_server", sprintf("server %q has no scope map", [input.server.id]), 403) if {
	not srv
} else := sc_deny("unknown_tool", sprintf("tool %q is not known", [input.mcp.tool]), 403) if {
	is_tool_call
	not required
} else := sc_deny("method_not_allowed", sprintf("method %q is not allowed on this server", [input.mcp.method]), 403) if {
	not required
} else := sc_workload_decision if {
	# mTLS (SPIFFE) workloads carry no OAuth scopes; an explicit list
	# of tools stands in for them.
	input.principal.method == "mtls"
} else := sc_deny_scope if {
	count(missing) > 0
} else := sc_allow("allowed", required, downstream)

sc_authenticated if input.principal.authenticated == true

sc_housekeeping if input.mcp.kind in cfg.housekeeping_kinds

sc_housekeeping if input.mcp.method in cfg.housekeeping_methods

sc_housekeeping if startswith(input.mcp.method, "notifications/")

sc_workload_decision := sc_allow("allowed", [], downstream) if {
	is_tool_call
	input.mcp.tool in srv.mtls_tools
} else := sc_deny("workload_not_allowed", sprintf("mTLS workloads may not call %s", [operation]), 403)

sc_deny_scope := {
	"allow": false,
	"reason": "insufficient_scope",
	"message": sprintf("%s needs scope %s; the token lacks %s", [operation, concat(" ", required), concat(" ", sort(missing))]),
	"http_status": 403,
	"required_scopes": required,
	"scopes": [],
}

# The credential mode for this caller kind, if the server offers it.
credential := c if {
	c := cfg.credentials[input.principal.kind]
	c in input.server.credential_modes
}

credential_part := {"credential": credential} if {
	credential
} else := {}

sc_allow(reason, req, granted) := object.union(
	{
		"allow": true,
		"reason": reason,
		"http_status": 200,
		"required_scopes": req,
		"scopes": granted,
	},
	credential_part,
)

sc_deny(reason, message, status) := {
	"allow": false,
	"reason": reason,
	"message": message,
	"http_status": status,
	"required_scopes": [],
	"scopes": [],
}
