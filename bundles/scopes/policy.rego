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
#     when the server offers that mode (input.server.credential_modes);
#   - methods are matched exactly with their message kind (a "notification"
#     that carries an id is a request), and a JSON-RPC response (an answer to
#     the server's elicitation, sampling or roots request) is accepted only
#     from a person present;
#   - completion/complete needs the scopes of what it completes (prompts/get
#     for a prompt, resources/read for a resource).
#
# Input: mcpauthz.input/v1. Output: data.mcpauthz.decision
# (mcpauthz.decision/v1). All facts live in data.mcpauthz.scopes;
# data_check.rego refuses the bundle when they are not well-formed.
package mcpauthz

cfg := data.mcpauthz.scopes

srv := cfg.servers[input.server.id]

is_tool_call if input.mcp.method == "tools/call"

# completion/complete reveals what it completes: it needs the same scopes.
completes := "prompts/get" if {
	input.mcp.method == "completion/complete"
	input.mcp.prompt != ""
} else := "resources/read" if {
	input.mcp.method == "completion/complete"
	input.mcp.uri != ""
}

# What the call is, for messages: the tool name or the method.
operation := input.mcp.tool if {
	is_tool_call
} else := input.mcp.method

required := srv.tools[input.mcp.tool] if {
	is_tool_call
} else := srv.methods[completes] if {
	input.mcp.method == "completion/complete"
} else := srv.methods[input.mcp.method] if {
	not is_tool_call
	input.mcp.method != "completion/complete"
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
} else := sc_deny("response_not_allowed", sc_response_message, 403) if {
	input.mcp.kind == "response"
} else := sc_deny("method_not_allowed", sc_method_message, 403) if {
	# Everything below is a request; other kinds are refused here.
	input.mcp.kind != "request"
} else := sc_deny("unknown_server", sprintf("server %q has no scope map", [input.server.id]), 403) if {
	not srv
} else := sc_deny("unknown_tool", sprintf("tool %q is not known", [input.mcp.tool]), 403) if {
	is_tool_call
	not required
} else := sc_deny("method_not_allowed", sc_method_message, 403) if {
	not required
} else := sc_deny("invalid_scope_map", sprintf("the scopes %s needs are not a list of strings in data.mcpauthz.scopes", [operation]), 403) if {
	# Fail closed on a wrongly typed map: a string would give no missing
	# scope at all.
	not sc_scope_list(required)
} else := sc_workload_decision if {
	# mTLS (SPIFFE) workloads carry no OAuth scopes; an explicit list
	# of tools stands in for them.
	input.principal.method == "mtls"
} else := sc_deny_scope if {
	count(missing) > 0
} else := sc_allow("allowed", required, downstream)

sc_authenticated if input.principal.authenticated == true

sc_scope_list(xs) if {
	is_array(xs)
	every x in xs {
		is_string(x)
	}
}

# --- protocol housekeeping --------------------------------------------------

sc_housekeeping if {
	input.mcp.kind == "request"
	input.mcp.method in cfg.protocol.requests
}

sc_housekeeping if {
	input.mcp.kind == "notification"
	input.mcp.method in cfg.protocol.notifications
}

sc_housekeeping if input.mcp.kind in cfg.protocol.transport_kinds

# The input does not say which server request a response answers, so the
# kinds in protocol.responders (a person present) may answer all of them
# and nobody else any: an agent alone must not accept an elicitation.
sc_housekeeping if {
	input.mcp.kind == "response"
	input.principal.kind in cfg.protocol.responders
}

sc_response_message := sprintf("principal kind %q may not answer server requests (elicitation, sampling, roots): a person must be present", [input.principal.kind])

sc_method_message := sprintf("%q with an id is a request, not a notification", [input.mcp.method]) if {
	input.mcp.kind == "request"
	startswith(input.mcp.method, "notifications/")
} else := sprintf("%s %q is not allowed on this server", [input.mcp.kind, input.mcp.method])

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
