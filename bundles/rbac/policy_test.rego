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

test_several_roles_denial_message if {
	d := mcpauthz.decision with input as call("human", ["viewer", "editor"], all_scopes, "shareDocument")
	d.reason == "role_not_allowed"
	d.message == "roles viewer, editor may not call shareDocument"
}

# Stock SDK clients send these on their own (issue 14: logging/setLevel).
test_stock_client_housekeeping if {
	every method in ["logging/setLevel", "resources/templates/list"] {
		d := mcpauthz.decision with input as housekeeping_input("request", method)
		d.reason == "housekeeping"
	}
	every method in ["notifications/progress", "notifications/roots/list_changed"] {
		d := mcpauthz.decision with input as housekeeping_input("notification", method)
		d.reason == "housekeeping"
	}
}

# rbac grants no prompts or resources, so completion (which would leak
# their names and arguments) is not allowed either.
test_completion_not_allowed if {
	d := mcpauthz.decision with input as housekeeping_input("request", "completion/complete")
	d.reason == "method_not_allowed"
	d.message == "request \"completion/complete\" is not allowed on this server"
}

# ============================================================================
# HOSTILE INPUTS: shapes an attacker tries (issue 15). Each must be refused.
# ============================================================================

# --- methods are matched exactly, together with the message kind -------------

test_hostile_notification_with_id_is_a_request if {
	every method in ["notifications/initialized", "notifications/cancelled", "notifications/anything"] {
		d := mcpauthz.decision with input as housekeeping_input("request", method)
		d.allow == false
		d.reason == "method_not_allowed"
		d.message == sprintf("%q with an id is a request, not a notification", [method])
	}
}

test_hostile_request_name_as_notification if {
	every method in ["ping", "initialize", "tools/list", "logging/setLevel"] {
		d := mcpauthz.decision with input as housekeeping_input("notification", method)
		d.reason == "method_not_allowed"
		d.message == sprintf("notification %q is not allowed on this server", [method])
	}
}

# A tools/call without an id would be executed by some servers without an
# answer: it is not a tool call rbac allows, whatever the roles.
test_hostile_tool_call_as_notification if {
	inp := json.patch(call("human", ["admin"], all_scopes, "readDocument"), [{"op": "replace", "path": "/mcp/kind", "value": "notification"}])
	d := mcpauthz.decision with input as inp
	d.reason == "method_not_allowed"
	d.message == "notification \"tools/call\" is not allowed on this server"
}

test_hostile_method_spellings if {
	every method in [
		"notifications/initialized/../../tools/call", "notifications/", "Tools/list", "TOOLS/LIST",
		"tools/list ", " ping", "logging/setlevel", "ping\u0000", "tools／list", "initialize/",
	] {
		d := mcpauthz.decision with input as housekeeping_input("request", method)
		d.reason == "method_not_allowed"
	}
}

test_hostile_unknown_message_kind if {
	every kind in ["", "Request", "batch", "notification "] {
		d := mcpauthz.decision with input as housekeeping_input(kind, "ping")
		d.reason == "method_not_allowed"
	}
}

# --- tool names are compared byte for byte -----------------------------------

test_hostile_tool_name_variants if {
	every t in ["ReadDocument", "readdocument", "readDocument ", "readDocument\u0000", "ｒeadDocument", "read_document", "deleteDocument/"] {
		d := mcpauthz.decision with input as call("human", ["admin"], all_scopes, t)
		d.reason == "unknown_tool"
	}
}

# --- client JSON-RPC responses: who may answer the server --------------------

response_from(kind) := json.patch(housekeeping_input("response", ""), [{"op": "replace", "path": "/principal/kind", "value": kind}])

test_hostile_response_by_agent_alone if {
	d := mcpauthz.decision with input as response_from("agent")
	d == {
		"allow": false,
		"reason": "response_not_allowed",
		"message": "principal kind \"agent\" may not answer server requests (elicitation, sampling, roots): a person must be present",
		"http_status": 403,
		"required_scopes": [],
		"scopes": [],
	}
	every kind in ["anonymous", "", "Human"] {
		r := mcpauthz.decision with input as response_from(kind)
		r.reason == "response_not_allowed"
	}
}

test_response_by_person_present if {
	every kind in ["human", "agent_for_user"] {
		d := mcpauthz.decision with input as response_from(kind)
		d.reason == "housekeeping"
	}
}

test_hostile_unauthenticated_response if {
	inp := json.patch(response_from("human"), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	d := mcpauthz.decision with input as inp
	d.reason == "unauthenticated"
}

# --- claim shapes: roles must be an array of strings, scopes match exactly ---

test_hostile_roles_claim_shapes if {
	every roles in [{"admin": "admin"}, "admin", [["admin"]], ["Admin"], ["admin "], [{"name": "admin"}], null] {
		d := mcpauthz.decision with input as call("human", roles, all_scopes, "deleteDocument")
		d.reason == "role_not_allowed"
	}
}

test_hostile_scope_shapes if {
	every scopes in [["docs:admin docs:read"], ["DOCS:ADMIN"], ["docs:admin "], ["docs:*"]] {
		d := mcpauthz.decision with input as call("human", ["admin"], scopes, "deleteDocument")
		d.reason == "insufficient_scope"
	}
}

# --- rbac never reads arguments ---------------------------------------------

# Ids in arguments are not rbac's business (bundles/abac checks ownership):
# the decision is the same whatever the arguments say.
test_arguments_do_not_change_the_decision if {
	every args in [{"id": "acme/../globex/doc-2"}, {"DocumentId": "globex/doc-2"}, {"nested": {"id": "x"}}, null] {
		inp := json.patch(call("human", ["viewer"], ["docs:read"], "readDocument"), [{"op": "replace", "path": "/mcp/arguments", "value": args}])
		d := mcpauthz.decision with input as inp
		d.reason == "allowed"
	}
}

# --- wrongly typed data refuses the bundle (data_check.rego) -----------------

test_shipped_data_is_well_formed if {
	mcpauthz.data_errors == set()
}

# [JSON patch of data.mcpauthz.rbac, a problem data_errors must report]
data_error_cases := [
	[{"op": "add", "path": "/destructive_tools", "value": "deleteDocument"}, "data.mcpauthz.rbac.destructive_tools: want a list of tool names, got string \"deleteDocument\""],
	[{"op": "add", "path": "/destructive_tools", "value": {"deleteDocument": true}}, "data.mcpauthz.rbac.destructive_tools: want a list of tool names, got object"],
	[{"op": "add", "path": "/roles/viewer", "value": "readDocument"}, "data.mcpauthz.rbac.roles.viewer: want a list of tool names, got string \"readDocument\""],
	[{"op": "add", "path": "/roles", "value": []}, "data.mcpauthz.rbac.roles: want an object: role -> list of tool names, got array"],
	[{"op": "add", "path": "/tool_scopes/readDocument", "value": ["docs:read"]}, "data.mcpauthz.rbac.tool_scopes.readDocument: want one OAuth scope (RFC 6749 scope-token: no spaces), got array"],
	[{"op": "add", "path": "/tool_scopes/readDocument", "value": "docs:read docs:write"}, "data.mcpauthz.rbac.tool_scopes.readDocument: want one OAuth scope (RFC 6749 scope-token: no spaces), got string \"docs:read docs:write\""],
	[{"op": "add", "path": "/tool_scopes/read doc", "value": "docs:read"}, "data.mcpauthz.rbac.tool_scopes: \"read doc\" is not an MCP tool name"],
	[{"op": "add", "path": "/roles/viewer", "value": ["readDocument", "export Document"]}, "data.mcpauthz.rbac.roles.viewer[1]: want an MCP tool name (1-128 of A-Z a-z 0-9 _ . -), got string \"export Document\""],
	[{"op": "add", "path": "/agents_allowed_tools", "value": ["readDocument", "readDocumnet"]}, "data.mcpauthz.rbac.agents_allowed_tools[1]: tool \"readDocumnet\" is not in tool_scopes"],
	[{"op": "add", "path": "/destructive_tool", "value": []}, "data.mcpauthz.rbac.destructive_tool is not a known key"],
	[{"op": "remove", "path": "/destructive_tools"}, "data.mcpauthz.rbac.destructive_tools is missing: want a list of tool names"],
	[{"op": "add", "path": "/protocol", "value": "ping"}, "data.mcpauthz.rbac.protocol: want an object with requests, notifications, transport_kinds and responders, got string \"ping\""],
	[{"op": "add", "path": "/protocol/requests", "value": ["ping", "tools/call"]}, "data.mcpauthz.rbac.protocol.requests[1]: want a request method other than tools/call and notifications/*, got string \"tools/call\""],
	[{"op": "add", "path": "/protocol/notifications", "value": ["initialized"]}, "data.mcpauthz.rbac.protocol.notifications[0]: want a notifications/* method, got string \"initialized\""],
	[{"op": "add", "path": "/protocol/transport_kinds", "value": "stream"}, "data.mcpauthz.rbac.protocol.transport_kinds: want a list of transport kinds (stream, end_session), got string \"stream\""],
	[{"op": "add", "path": "/protocol/transport_kinds", "value": ["stream", "response"]}, "data.mcpauthz.rbac.protocol.transport_kinds[1]: want stream or end_session, got string \"response\""],
	[{"op": "add", "path": "/protocol/responders", "value": ["human", "anonymous"]}, "data.mcpauthz.rbac.protocol.responders[1]: want human, agent_for_user or agent, got string \"anonymous\""],
	[{"op": "remove", "path": "/protocol/responders"}, "data.mcpauthz.rbac.protocol.responders is missing: want a list of principal kinds (human, agent_for_user, agent)"],
	[{"op": "add", "path": "/protocol/responder", "value": ["human"]}, "data.mcpauthz.rbac.protocol.responder is not a known key"],
]

data_error_mismatches(cases) := {[c, errs] |
	some c in cases
	bad := json.patch(data.mcpauthz.rbac, [c[0]])
	errs := mcpauthz.data_errors with data.mcpauthz.rbac as bad
	not c[1] in errs
}

# Each data_errors evaluation runs every check: six cases per test keep
# each test well inside the test timeout, even traced for coverage.
test_data_error_cases if count(data_error_cases) == 19

test_hostile_data_types_refused_0 if {
	data_error_mismatches(array.slice(data_error_cases, 0, 6)) == set()
}

test_hostile_data_types_refused_1 if {
	data_error_mismatches(array.slice(data_error_cases, 6, 12)) == set()
}

test_hostile_data_types_refused_2 if {
	data_error_mismatches(array.slice(data_error_cases, 12, 18)) == set()
}

test_hostile_data_types_refused_3 if {
	data_error_mismatches(array.slice(data_error_cases, 18, 24)) == set()
}

test_missing_data_refused if {
	every bad in [null, [], "rbac"] {
		errs := mcpauthz.data_errors with data.mcpauthz.rbac as bad
		errs == {"data.mcpauthz.rbac is missing or not an object (data.json nests it under mcpauthz.rbac)"}
	}
}
