# Role-based access control for a document MCP server.
#
# Input: mcpauthz.input/v1 (see policy/input.go). Output: data.mcpauthz.decision,
# an mcpauthz.decision/v1 object. All role, tool and scope facts live in
# data.mcpauthz.rbac (data.json); this file only holds the logic, and
# data_check.rego refuses the bundle when the data is not well-formed.
#
# Messages are matched exactly: a method counts only with the message kind
# it is defined for (a "notification" that carries an id is a request), and
# tool names are compared byte for byte.
package mcpauthz

cfg := data.mcpauthz.rbac

tool := input.mcp.tool

required_scope := cfg.tool_scopes[tool]

# Roles come from the token's `roles` claim, which must be an array (an
# object's values are not roles); non-strings in it are ignored.
roles := [r | is_array(input.principal.claims.roles); some r in input.principal.claims.roles; is_string(r)]

role_tools contains t if {
	some r in roles
	some t in cfg.roles[r]
}

# Only an explicit `true` counts; a missing field is unauthenticated.
authenticated if input.principal.authenticated == true

known_kinds := {"human", "agent_for_user", "agent"}

# --- the decision -----------------------------------------------------------

# The first branches are the hot path: an allowed tool call of a person or
# of an agent acting for one, decided without a rule or function call, its
# value one of the constant `allowed` objects (built once per policy
# load). The third branch allows exactly the same calls and more (mTLS
# workloads, autonomous agents); everything after it explains a denial
# (or housekeeping).
decision := allowed[s] if {
	input.principal.kind == "human"
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
	input.principal.authenticated == true
	s := data.mcpauthz.rbac.tool_scopes[input.mcp.tool]
	is_array(input.principal.claims.roles)
	some r in input.principal.claims.roles
	input.mcp.tool in role_tool_sets[r]
	s in input.principal.scopes
} else := allowed[s] if {
	input.principal.kind == "agent_for_user"
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
	input.principal.authenticated == true
	s := data.mcpauthz.rbac.tool_scopes[input.mcp.tool]
	not input.mcp.tool in data.mcpauthz.rbac.destructive_tools
	is_array(input.principal.claims.roles)
	some r in input.principal.claims.roles
	input.mcp.tool in role_tool_sets[r]
	s in input.principal.scopes
} else := allowed[s] if {
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
	input.principal.authenticated == true
	s := data.mcpauthz.rbac.tool_scopes[input.mcp.tool]
	permitted_by_kind
	has_scope(s)
} else := deny("unauthenticated", "authentication is required", 401) if {
	not authenticated
} else := allow_housekeeping if {
	housekeeping
} else := deny("response_not_allowed", response_message, 403) if {
	input.mcp.kind == "response"
} else := tool_decision if {
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
} else := deny("method_not_allowed", method_message, 403)

permitted_by_kind if {
	input.principal.kind == "human"
	role_allows
}

permitted_by_kind if {
	input.principal.kind == "agent_for_user"
	not input.mcp.tool in data.mcpauthz.rbac.destructive_tools
	role_allows
}

permitted_by_kind if {
	input.principal.kind == "agent"
	input.mcp.tool in data.mcpauthz.rbac.agents_allowed_tools
}

role_allows if {
	is_array(input.principal.claims.roles)
	some r in input.principal.claims.roles
	input.mcp.tool in data.mcpauthz.rbac.roles[r]
}

# OAuth scopes exist only on tokens: an mTLS (SPIFFE) workload has none, and
# is limited by the agent allow-list instead.
has_scope(_) if input.principal.method == "mtls"

has_scope(s) if s in input.principal.scopes

# --- protocol housekeeping --------------------------------------------------

# Open to every authenticated principal: the requests and notifications
# stock MCP clients send on their own, the GET stream and session end, and
# answers to the server's own requests from the principal kinds allowed to
# give them (protocol.responders).
housekeeping if {
	input.mcp.kind == "request"
	input.mcp.method in cfg.protocol.requests
}

housekeeping if {
	input.mcp.kind == "notification"
	input.mcp.method in cfg.protocol.notifications
}

housekeeping if input.mcp.kind in cfg.protocol.transport_kinds

# A JSON-RPC response answers a request the server sent (elicitation,
# sampling, roots, ping). The input does not say which one, so the kinds
# in protocol.responders may answer all of them and nobody else may answer
# any: an agent alone must not answer an elicitation meant for a person.
housekeeping if {
	input.mcp.kind == "response"
	input.principal.kind in cfg.protocol.responders
}

# The tools of each role as a set (a hashed lookup, however many tools a
# role has), built once per policy load.
role_tool_sets := {r: {t | some t in tools} | some r, tools in cfg.roles}

# The allow decision of a tool call, per required scope.
allowed := {s: {
	"allow": true,
	"reason": "allowed",
	"http_status": 200,
	"required_scopes": [s],
	"scopes": [s],
} |
	some s in cfg.tool_scopes
}

allow_housekeeping := {
	"allow": true,
	"reason": "housekeeping",
	"http_status": 200,
	"required_scopes": [],
	"scopes": [],
}

response_message := sprintf("principal kind %q may not answer server requests (elicitation, sampling, roots): a person must be present", [input.principal.kind])

method_message := sprintf("%q with an id is a request, not a notification", [input.mcp.method]) if {
	input.mcp.kind == "request"
	startswith(input.mcp.method, "notifications/")
} else := sprintf("%s %q is not allowed on this server", [input.mcp.kind, input.mcp.method])

# --- tools/call denials -----------------------------------------------------

# Only reached when the hot path did not allow: the first check that fails
# explains why. When every other check passes, the scope is what is missing.
tool_decision := deny("unknown_tool", sprintf("tool %q is not known", [tool]), 403) if {
	not required_scope
} else := deny("unknown_principal_kind", sprintf("principal kind %q may not call tools", [input.principal.kind]), 403) if {
	not input.principal.kind in known_kinds
} else := deny("agent_destructive_tool", sprintf("an agent acting for a user may not call %s", [tool]), 403) if {
	input.principal.kind == "agent_for_user"
	tool in cfg.destructive_tools
} else := deny("agent_tool_not_allowed", sprintf("an autonomous agent may not call %s", [tool]), 403) if {
	input.principal.kind == "agent"
	not tool in cfg.agents_allowed_tools
} else := deny("role_not_allowed", role_message, 403) if {
	input.principal.kind != "agent"
	not tool in role_tools
} else := insufficient_scope

insufficient_scope := {
	"allow": false,
	"reason": "insufficient_scope",
	"message": sprintf("scope %s is required to call %s", [required_scope, tool]),
	"http_status": 403,
	"required_scopes": [required_scope],
	"scopes": [],
}

role_message := sprintf("principal has no role that may call %s", [tool]) if {
	count(roles) == 0
} else := sprintf("role %s may not call %s", [roles[0], tool]) if {
	count(roles) == 1
} else := sprintf("roles %s may not call %s", [concat(", ", roles), tool])

deny(reason, message, status) := {
	"allow": false,
	"reason": reason,
	"message": message,
	"http_status": status,
	"required_scopes": [],
	"scopes": [],
}
