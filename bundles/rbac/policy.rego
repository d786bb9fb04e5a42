# Role-based access control for a document MCP server.
#
# Input: mcpauthz.input/v1 (see policy/input.go). Output: data.mcpauthz.decision,
# an mcpauthz.decision/v1 object. All role, tool and scope facts live in
# data.mcpauthz.rbac (data.json); this file only holds the logic.
package mcpauthz

cfg := data.mcpauthz.rbac

principal := input.principal

tool := input.mcp.tool

required_scope := cfg.tool_scopes[tool]

# Roles come from the token's `roles` claim; non-strings are ignored.
roles := [r | some r in principal.claims.roles; is_string(r)]

role_tools contains t if {
	some r in roles
	some t in cfg.roles[r]
}

# Only an explicit `true` counts; a missing field is unauthenticated.
authenticated if principal.authenticated == true

known_kinds := {"human", "agent_for_user", "agent"}

# --- the decision -----------------------------------------------------------

# The first branch is the hot path: an allowed tool call is decided by one
# indexed rule. Everything after it explains a denial (or housekeeping).
decision := {
	"allow": true,
	"reason": "allowed",
	"http_status": 200,
	"required_scopes": [s],
	"scopes": [s],
} if {
	input.principal.authenticated == true
	input.mcp.method == "tools/call"
	s := data.mcpauthz.rbac.tool_scopes[input.mcp.tool]
	permitted_by_kind
	has_scope(s)
} else := deny("unauthenticated", "authentication is required", 401) if {
	not authenticated
} else := allow_housekeeping if {
	housekeeping
} else := tool_decision if {
	input.mcp.method == "tools/call"
} else := deny("method_not_allowed", sprintf("method %q is not allowed on this server", [input.mcp.method]), 403)

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
	some r in input.principal.claims.roles
	input.mcp.tool in data.mcpauthz.rbac.roles[r]
}

# OAuth scopes exist only on tokens: an mTLS (SPIFFE) workload has none, and
# is limited by the agent allow-list instead.
has_scope(_) if input.principal.method == "mtls"

has_scope(s) if s in input.principal.scopes

# Protocol housekeeping is open to every authenticated principal.
housekeeping if input.mcp.kind in cfg.housekeeping_kinds

housekeeping if input.mcp.method in cfg.housekeeping_methods

housekeeping if startswith(input.mcp.method, "notifications/")

allow_housekeeping := {
	"allow": true,
	"reason": "housekeeping",
	"http_status": 200,
	"required_scopes": [],
	"scopes": [],
}

tool_decision := deny("unknown_tool", sprintf("tool %q is not known", [tool]), 403) if {
	not required_scope
} else := deny("unknown_principal_kind", sprintf("principal kind %q may not call tools", [principal.kind]), 403) if {
	not principal.kind in known_kinds
} else := deny("agent_destructive_tool", sprintf("an agent acting for a user may not call %s", [tool]), 403) if {
	principal.kind == "agent_for_user"
	tool in cfg.destructive_tools
} else := deny("agent_tool_not_allowed", sprintf("an autonomous agent may not call %s", [tool]), 403) if {
	principal.kind == "agent"
	not tool in cfg.agents_allowed_tools
} else := deny("role_not_allowed", role_message, 403) if {
	principal.kind != "agent"
	not tool in role_tools
} else := insufficient_scope if {
	not has_scope(required_scope)
} else := {
	"allow": true,
	"reason": "allowed",
	"http_status": 200,
	"required_scopes": [required_scope],
	"scopes": [required_scope],
}

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
