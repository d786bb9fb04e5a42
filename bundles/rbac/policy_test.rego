package mcpauthz.policy_test

import data.mcpauthz

all_scopes := ["docs:read", "docs:write", "docs:admin"]

tools := ["readDocument", "createDocument", "updateDocument", "deleteDocument", "shareDocument"]

call(kind, roles, scopes, tool) := {
	"version": "mcpauthz.input/v1",
	"request": {"id": "r1", "method": "POST", "path": "/mcp", "headers": {}},
	"mcp": {"kind": "request", "method": "tools/call", "tool": tool, "arguments": {"id": "doc-1"}},
	"principal": {
		"authenticated": true,
		"kind": kind,
		"subject": "alice",
		"scopes": scopes,
		"claims": {"roles": roles},
	},
	"server": {"id": "docs", "scopes": all_scopes},
}

housekeeping_input(kind, method) := object.union(call("human", [], [], ""), {"mcp": {"kind": kind, "method": method}})

# want[role][tool] for a human with every scope.
want := {
	"viewer": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false},
	"editor": {"readDocument": true, "createDocument": true, "updateDocument": true, "deleteDocument": false, "shareDocument": false},
	"admin": {"readDocument": true, "createDocument": true, "updateDocument": true, "deleteDocument": true, "shareDocument": true},
}

# Every role x tool combination whose decision differs from want.
matrix_mismatches contains [role, tool, d] if {
	some role, row in want
	some tool, allowed in row
	d := mcpauthz.decision with input as call("human", [role], all_scopes, tool)
	d.allow != allowed
}

test_role_tool_matrix if {
	count(want) == 3
	matrix_mismatches == set()
}

test_allow_carries_downstream_scope if {
	d := mcpauthz.decision with input as call("human", ["editor"], all_scopes, "updateDocument")
	d == {"allow": true, "reason": "allowed", "http_status": 200, "required_scopes": ["docs:write"], "scopes": ["docs:write"]}
}

test_role_denial_message if {
	d := mcpauthz.decision with input as call("human", ["viewer"], all_scopes, "deleteDocument")
	d.allow == false
	d.reason == "role_not_allowed"
	d.message == "role viewer may not call deleteDocument"
	d.http_status == 403
}

test_no_roles_denied if {
	d := mcpauthz.decision with input as call("human", [], all_scopes, "readDocument")
	d.reason == "role_not_allowed"
	d.message == "principal has no role that may call readDocument"
}

test_any_of_several_roles if {
	d := mcpauthz.decision with input as call("human", ["viewer", "editor"], all_scopes, "createDocument")
	d.allow == true
}

test_unknown_role_ignored if {
	d := mcpauthz.decision with input as call("human", ["root", 7], all_scopes, "readDocument")
	d.allow == false
	d.message == "role root may not call readDocument"
}

test_missing_scope if {
	d := mcpauthz.decision with input as call("human", ["admin"], ["docs:read", "docs:write"], "shareDocument")
	d == {
		"allow": false,
		"reason": "insufficient_scope",
		"message": "scope docs:admin is required to call shareDocument",
		"http_status": 403,
		"required_scopes": ["docs:admin"],
		"scopes": [],
	}
}

test_missing_scope_each_tool if {
	every tool in tools {
		d := mcpauthz.decision with input as call("human", ["admin"], [], tool)
		d.reason == "insufficient_scope"
		d.required_scopes == [data.mcpauthz.rbac.tool_scopes[tool]]
	}
}

test_role_checked_before_scope if {
	d := mcpauthz.decision with input as call("human", ["viewer"], [], "deleteDocument")
	d.reason == "role_not_allowed"
}

test_unauthenticated if {
	inp := json.patch(call("human", ["admin"], all_scopes, "readDocument"), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	d := mcpauthz.decision with input as inp
	d.allow == false
	d.reason == "unauthenticated"
	d.http_status == 401
}

test_unauthenticated_when_field_missing if {
	d := mcpauthz.decision with input as {"mcp": {"kind": "request", "method": "ping"}, "principal": {}}
	d.reason == "unauthenticated"
	d.http_status == 401
}

test_unauthenticated_housekeeping_denied if {
	inp := json.patch(housekeeping_input("request", "initialize"), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	d := mcpauthz.decision with input as inp
	d.reason == "unauthenticated"
}

test_housekeeping_methods if {
	every method in ["initialize", "ping", "tools/list", "resources/list", "prompts/list"] {
		d := mcpauthz.decision with input as housekeeping_input("request", method)
		d.allow == true
		d.reason == "housekeeping"
	}
}

test_housekeeping_notifications if {
	every method in ["notifications/initialized", "notifications/cancelled"] {
		d := mcpauthz.decision with input as housekeeping_input("notification", method)
		d.allow == true
	}
}

test_housekeeping_kinds if {
	every kind in ["response", "stream", "end_session"] {
		d := mcpauthz.decision with input as housekeeping_input(kind, "")
		d.allow == true
		d.reason == "housekeeping"
	}
}

test_housekeeping_for_agents if {
	inp := json.patch(housekeeping_input("request", "tools/list"), [{"op": "replace", "path": "/principal/kind", "value": "agent"}])
	d := mcpauthz.decision with input as inp
	d.allow == true
}

test_other_methods_denied if {
	d := mcpauthz.decision with input as housekeeping_input("request", "resources/read")
	d.allow == false
	d.reason == "method_not_allowed"
}

test_unknown_tool if {
	d := mcpauthz.decision with input as call("human", ["admin"], all_scopes, "formatDisk")
	d.reason == "unknown_tool"
	d.allow == false
}

test_agent_for_user_uses_role if {
	d := mcpauthz.decision with input as call("agent_for_user", ["editor"], all_scopes, "updateDocument")
	d.allow == true
	d.scopes == ["docs:write"]
	v := mcpauthz.decision with input as call("agent_for_user", ["viewer"], all_scopes, "updateDocument")
	v.reason == "role_not_allowed"
}

test_agent_for_user_never_destructive if {
	every tool in ["deleteDocument", "shareDocument"] {
		d := mcpauthz.decision with input as call("agent_for_user", ["admin"], all_scopes, tool)
		d.allow == false
		d.reason == "agent_destructive_tool"
		d.http_status == 403
	}
}

test_agent_alone_allow_list if {
	d := mcpauthz.decision with input as call("agent", [], ["docs:read"], "readDocument")
	d.allow == true
	d.scopes == ["docs:read"]
}

test_agent_alone_ignores_roles if {
	every tool in ["createDocument", "updateDocument", "deleteDocument", "shareDocument"] {
		d := mcpauthz.decision with input as call("agent", ["admin"], all_scopes, tool)
		d.allow == false
		d.reason == "agent_tool_not_allowed"
	}
}

test_agent_alone_needs_scope if {
	d := mcpauthz.decision with input as call("agent", [], [], "readDocument")
	d.reason == "insufficient_scope"
}

test_unknown_kind_denied if {
	d := mcpauthz.decision with input as call("anonymous", ["admin"], all_scopes, "readDocument")
	d.reason == "unknown_principal_kind"
}

# An mTLS (SPIFFE) workload carries no OAuth scopes: the agent allow-list
# alone governs it.
spiffe_agent(tool) := json.patch(call("agent", [], [], tool), [{"op": "add", "path": "/principal/method", "value": "mtls"}])

test_spiffe_agent_reads_without_scopes if {
	d := mcpauthz.decision with input as spiffe_agent("readDocument")
	d.allow == true
}

test_spiffe_agent_limited_to_allow_list if {
	d := mcpauthz.decision with input as spiffe_agent("createDocument")
	d.allow == false
	d.reason == "agent_tool_not_allowed"
}

test_jwt_agent_still_needs_scope if {
	d := mcpauthz.decision with input as call("agent", [], [], "readDocument")
	d.allow == false
	d.reason == "insufficient_scope"
}

# MCP 2026-07-28 clients open with server/discover instead of initialize.
test_server_discover_is_housekeeping if {
	d := mcpauthz.decision with input as housekeeping_input("request", "server/discover")
	d.allow == true
}
