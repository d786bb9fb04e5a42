package mcpauthz.scopes_test

import data.mcpauthz

all_scopes := ["docs:read", "docs:write", "docs:admin"]

call(kind, scopes, tool) := {
	"version": "mcpauthz.input/v1",
	"request": {"id": "r1", "method": "POST", "path": "/mcp", "headers": {}},
	"mcp": {"kind": "request", "method": "tools/call", "tool": tool, "uri": "", "arguments": {"id": "doc-1"}},
	"principal": {"authenticated": true, "kind": kind, "subject": "alice", "method": "jwt", "scopes": scopes, "claims": {}},
	"server": {"id": "docs", "scopes": all_scopes, "credential_mode": "public", "credential_modes": ["public", "service_account", "delegated"]},
}

method_call(scopes, method) := json.patch(call("human", scopes, ""), [{"op": "replace", "path": "/mcp/method", "value": method}])

decide(inp) := d if {
	d := mcpauthz.decision with input as inp
}

# [tool, token scopes, reason, required_scopes, granted scopes]
cases := [
	["readDocument", ["docs:read"], "allowed", ["docs:read"], ["documents.read"]],
	["readDocument", [], "insufficient_scope", ["docs:read"], []],
	["readDocument", ["docs:write"], "insufficient_scope", ["docs:read"], []],
	["createDocument", ["docs:write"], "allowed", ["docs:write"], ["documents.write"]],
	["updateDocument", ["docs:read"], "insufficient_scope", ["docs:write"], []],
	["deleteDocument", ["docs:write", "docs:admin"], "allowed", ["docs:write", "docs:admin"], ["documents.delete"]],
	["deleteDocument", ["docs:admin"], "insufficient_scope", ["docs:write", "docs:admin"], []],
	["deleteDocument", ["docs:write"], "insufficient_scope", ["docs:write", "docs:admin"], []],
	["shareDocument", all_scopes, "allowed", ["docs:admin"], ["documents.share"]],
	["shareDocument", ["docs:read", "docs:write"], "insufficient_scope", ["docs:admin"], []],
]

mismatches contains [c, [d.reason, d.required_scopes, d.scopes]] if {
	some c in cases
	d := decide(call("human", c[1], c[0]))
	[d.reason, d.required_scopes, d.scopes] != [c[2], c[3], c[4]]
}

test_tool_scope_table if {
	count(cases) == 10
	mismatches == set()
}

test_granted_scopes_are_descoped if {
	# A token with every scope still only grants the tool's downstream scope.
	d := decide(call("human", all_scopes, "readDocument"))
	d.allow == true
	d.scopes == ["documents.read"]
}

test_insufficient_scope_document if {
	d := decide(call("human", ["docs:read"], "deleteDocument"))
	d == {
		"allow": false,
		"reason": "insufficient_scope",
		"message": "deleteDocument needs scope docs:write docs:admin; the token lacks docs:admin docs:write",
		"http_status": 403,
		"required_scopes": ["docs:write", "docs:admin"],
		"scopes": [],
	}
}

test_downstream_defaults_to_required if {
	# exportDocument has required scopes but no downstream mapping.
	d := mcpauthz.decision with input as call("human", ["docs:read"], "exportDocument")
		with data.mcpauthz.scopes.servers.docs.tools.exportDocument as ["docs:read"]
	d.scopes == ["docs:read"]
}

test_agents_need_scopes_too if {
	every kind in ["agent", "agent_for_user"] {
		d := decide(call(kind, ["docs:read"], "updateDocument"))
		d.reason == "insufficient_scope"
		d.required_scopes == ["docs:write"]
	}
}

test_scope_names_match_exactly if {
	every scopes in [["DOCS:READ"], ["docs:read "], ["docs"], ["docs:read:all"]] {
		decide(call("human", scopes, "readDocument")).reason == "insufficient_scope"
	}
}

test_non_tool_methods if {
	r := decide(method_call(["docs:read"], "resources/read"))
	r.allow == true
	r.scopes == ["docs:read"]
	p := decide(method_call([], "prompts/get"))
	p.reason == "insufficient_scope"
	p.required_scopes == ["docs:read"]
	p.message == "prompts/get needs scope docs:read; the token lacks docs:read"

	# A subscription reveals what a read does: it needs the same scopes.
	u := decide(method_call(["docs:read"], "resources/subscribe"))
	u.allow == true
	v := decide(method_call([], "resources/subscribe"))
	v.reason == "insufficient_scope"
	v.required_scopes == ["docs:read"]
	w := decide(method_call(all_scopes, "resources/templates/subscribe"))
	w.reason == "method_not_allowed"
	w.message == "request \"resources/templates/subscribe\" is not allowed on this server"
}

test_unknown_tool if {
	d := decide(call("human", all_scopes, "formatDisk"))
	d.reason == "unknown_tool"
	d.required_scopes == []
}

test_unknown_server if {
	inp := json.patch(call("human", all_scopes, "readDocument"), [{"op": "replace", "path": "/server/id", "value": "wiki"}])
	d := decide(inp)
	d.reason == "unknown_server"
	d.message == "server \"wiki\" has no scope map"
}

# --- credential choice ------------------------------------------------------

# [kind, credential or null when the decision carries none]
credential_cases := [
	["agent", "service_account"],
	["agent_for_user", "delegated"],
	["human", null],
]

credential_mismatches contains [c, d] if {
	some c in credential_cases
	d := decide(call(c[0], ["docs:read"], "readDocument"))
	object.get(d, "credential", null) != c[1]
}

test_credential_by_kind if {
	credential_mismatches == set()
}

test_credential_only_if_offered if {
	inp := json.patch(call("agent_for_user", ["docs:read"], "readDocument"), [{"op": "replace", "path": "/server/credential_modes", "value": ["public", "service_account"]}])
	d := decide(inp)
	d.allow == true
	not "credential" in object.keys(d)
}

test_credential_on_housekeeping if {
	inp := json.patch(method_call([], "tools/list"), [{"op": "replace", "path": "/principal/kind", "value": "agent"}])
	d := decide(inp)
	d == {"allow": true, "reason": "housekeeping", "http_status": 200, "required_scopes": [], "scopes": [], "credential": "service_account"}
}

test_no_credential_on_denial if {
	d := decide(call("agent", [], "readDocument"))
	d.allow == false
	not "credential" in object.keys(d)
}

# --- workloads and protocol -------------------------------------------------

workload(tool) := json.patch(call("agent", [], tool), [{"op": "replace", "path": "/principal/method", "value": "mtls"}])

test_mtls_workload_tools if {
	d := decide(workload("readDocument"))
	d.allow == true
	d.required_scopes == []
	d.scopes == ["documents.read"]
	d.credential == "service_account"
	w := decide(workload("updateDocument"))
	w.reason == "workload_not_allowed"
	w.message == "mTLS workloads may not call updateDocument"
	m := decide(json.patch(workload(""), [{"op": "replace", "path": "/mcp/method", "value": "resources/read"}]))
	m.reason == "workload_not_allowed"
}

test_unauthenticated if {
	inp := json.patch(call("human", all_scopes, "readDocument"), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	decide(inp).http_status == 401
	decide({"mcp": {"method": "ping"}}).reason == "unauthenticated"
}

with_kind(inp, kind) := json.patch(inp, [{"op": "replace", "path": "/mcp/kind", "value": kind}])

test_housekeeping if {
	every m in ["initialize", "server/discover", "ping", "logging/setLevel", "tools/list"] {
		d := decide(method_call([], m))
		d.allow == true
		d.reason == "housekeeping"
	}
	every m in ["notifications/initialized", "notifications/cancelled", "notifications/progress"] {
		decide(with_kind(method_call([], m), "notification")).reason == "housekeeping"
	}
	every k in ["response", "stream", "end_session"] {
		decide(with_kind(method_call([], ""), k)).allow == true
	}
}

# completion/complete needs the scopes of what it completes.
completion(scopes, ref_field, ref) := json.patch(method_call(scopes, "completion/complete"), [{"op": "add", "path": sprintf("/mcp/%s", [ref_field]), "value": ref}])

test_completion_needs_the_completed_operations_scopes if {
	p := decide(completion(["docs:read"], "prompt", "summarize"))
	p.allow == true
	p.required_scopes == ["docs:read"]
	r := decide(completion([], "uri", "docs://{org}/{id}"))
	r.reason == "insufficient_scope"
	r.message == "completion/complete needs scope docs:read; the token lacks docs:read"

	# a server with resources but no prompts: completing a prompt is refused
	wiki := json.patch(completion(all_scopes, "prompt", "summarize"), [{"op": "replace", "path": "/server/id", "value": "wiki"}])
	u := mcpauthz.decision with input as wiki
		with data.mcpauthz.scopes.servers.wiki as {"tools": {}, "methods": {"resources/read": ["docs:read"]}}
	u.reason == "method_not_allowed"
	u.message == "request \"completion/complete\" is not allowed on this server"
}

# ============================================================================
# HOSTILE INPUTS: shapes an attacker tries (issue 15). Each must be refused.
# ============================================================================

# --- methods are matched exactly, together with the message kind -------------

test_hostile_notification_with_id if {
	d := decide(method_call(all_scopes, "notifications/initialized"))
	d.reason == "method_not_allowed"
	d.message == "\"notifications/initialized\" with an id is a request, not a notification"
}

test_hostile_request_names_as_notifications if {
	every m in ["ping", "initialize", "resources/read", "prompts/get"] {
		d := decide(with_kind(method_call(all_scopes, m), "notification"))
		d.reason == "method_not_allowed"
		d.message == sprintf("notification %q is not allowed on this server", [m])
	}

	# a tools/call without an id never gets a downstream grant
	d := decide(with_kind(call("human", all_scopes, "readDocument"), "notification"))
	d.reason == "method_not_allowed"
	d.scopes == []
}

test_hostile_method_and_tool_spellings if {
	every m in ["Resources/read", "resources/read ", "prompts/get/", "notifications/initialized/x", "tools/list\u0000"] {
		decide(method_call(all_scopes, m)).reason == "method_not_allowed"
	}
	every t in ["ReadDocument", "readDocument ", "ｒeadDocument"] {
		decide(call("human", all_scopes, t)).reason == "unknown_tool"
	}
	every kind in ["", "Request", "batch"] {
		decide(with_kind(call("human", all_scopes, "readDocument"), kind)).reason == "method_not_allowed"
	}
}

# --- client JSON-RPC responses: only a person present may answer -------------

response_from(kind) := json.patch(with_kind(method_call(all_scopes, ""), "response"), [{"op": "replace", "path": "/principal/kind", "value": kind}])

test_hostile_response_by_agent_alone if {
	d := decide(response_from("agent"))
	d == {
		"allow": false,
		"reason": "response_not_allowed",
		"message": "principal kind \"agent\" may not answer server requests (elicitation, sampling, roots): a person must be present",
		"http_status": 403,
		"required_scopes": [],
		"scopes": [],
	}
	decide(response_from("human")).reason == "housekeeping"
	decide(response_from("agent_for_user")).reason == "housekeeping"
}

# --- scopes are tokens, compared exactly -------------------------------------

test_hostile_scope_shapes if {
	every scopes in [["docs:read docs:write"], ["docs:read\u00a0"], ["docs:*"], ["*"], ["Docs:Read"]] {
		decide(call("human", scopes, "readDocument")).reason == "insufficient_scope"
	}
}

# --- data with the wrong type fails closed, and refuses the bundle ------------

test_hostile_scope_map_as_string_fails_closed if {
	# `some s in "docs:write"` iterates nothing: a string would require no
	# scope at all. The policy refuses the call instead.
	d := mcpauthz.decision with input as call("human", [], "updateDocument")
		with data.mcpauthz.scopes.servers.docs.tools.updateDocument as "docs:write"
	d.reason == "invalid_scope_map"
	d.message == "the scopes updateDocument needs are not a list of strings in data.mcpauthz.scopes"
	d.allow == false
}

test_shipped_data_is_well_formed if {
	mcpauthz.data_errors == set()
}

# [JSON patch of data.mcpauthz.scopes, a problem data_errors must report]
data_error_cases := [
	[{"op": "add", "path": "/servers/docs/tools/readDocument", "value": "docs:read"}, "data.mcpauthz.scopes.servers.docs.tools.readDocument: want a list of OAuth scopes, got string \"docs:read\""],
	[{"op": "add", "path": "/servers/docs/tools/readDocument", "value": ["docs:read docs:write"]}, "data.mcpauthz.scopes.servers.docs.tools.readDocument[0]: want an OAuth scope (RFC 6749 scope-token: no spaces), got string \"docs:read docs:write\""],
	[{"op": "add", "path": "/servers/docs/methods/resources~1read", "value": [true]}, "data.mcpauthz.scopes.servers.docs.methods.resources/read[0]: want an OAuth scope (RFC 6749 scope-token: no spaces), got boolean true"],
	[{"op": "add", "path": "/servers/docs/methods/tools~1call", "value": []}, "data.mcpauthz.scopes.servers.docs.methods: \"tools/call\" is not a request method that needs scopes"],
	[{"op": "add", "path": "/servers/docs/downstream/exportDocument", "value": ["documents.export"]}, "data.mcpauthz.scopes.servers.docs.downstream: tool \"exportDocument\" is not in tools"],
	[{"op": "add", "path": "/servers/docs/downstream", "value": ["documents.read"]}, "data.mcpauthz.scopes.servers.docs.downstream: want an object: tool name -> list of upstream scopes, got array"],
	[{"op": "add", "path": "/servers/docs/mtls_tools", "value": "readDocument"}, "data.mcpauthz.scopes.servers.docs.mtls_tools: want a list of tool names, got string \"readDocument\""],
	[{"op": "add", "path": "/servers/docs/mtls_tools", "value": ["readDocument", "readdocument"]}, "data.mcpauthz.scopes.servers.docs.mtls_tools[1]: tool \"readdocument\" is not in tools"],
	[{"op": "add", "path": "/servers/docs/mtls_tools", "value": [7]}, "data.mcpauthz.scopes.servers.docs.mtls_tools[0]: want an MCP tool name, got number 7"],
	[{"op": "add", "path": "/servers/docs/tools/read doc", "value": []}, "data.mcpauthz.scopes.servers.docs.tools: \"read doc\" is not an MCP tool name"],
	[{"op": "add", "path": "/servers/docs/tool", "value": {}}, "data.mcpauthz.scopes.servers.docs.tool is not a known key"],
	[{"op": "remove", "path": "/servers/docs/tools"}, "data.mcpauthz.scopes.servers.docs.tools is missing: want an object: tool name -> list of OAuth scopes"],
	[{"op": "add", "path": "/servers/wiki", "value": ["readDocument"]}, "data.mcpauthz.scopes.servers.wiki: want an object {tools, methods, downstream, mtls_tools}, got array"],
	[{"op": "add", "path": "/servers", "value": "docs"}, "data.mcpauthz.scopes.servers: want an object: server id -> {tools, methods, downstream, mtls_tools}, got string \"docs\""],
	[{"op": "add", "path": "/credentials/agent", "value": "service-account"}, "data.mcpauthz.scopes.credentials.agent: want one of delegated, individual, public, service_account, static, got string \"service-account\""],
	[{"op": "add", "path": "/credentials/agent", "value": {"mode": "delegated"}}, "data.mcpauthz.scopes.credentials.agent: want one of delegated, individual, public, service_account, static, got object"],
	[{"op": "add", "path": "/credentials/robot", "value": "public"}, "data.mcpauthz.scopes.credentials: \"robot\" is not a principal kind (human, agent_for_user, agent)"],
	[{"op": "remove", "path": "/credentials"}, "data.mcpauthz.scopes.credentials is missing: want an object: principal kind -> credential mode"],
	[{"op": "add", "path": "/credential", "value": {}}, "data.mcpauthz.scopes.credential is not a known key"],
	[{"op": "add", "path": "/protocol/requests", "value": ["ping", "completion/complete"]}, "data.mcpauthz.scopes.protocol.requests[1]: want a request method other than tools/call, completion/complete and notifications/*, got string \"completion/complete\""],
	[{"op": "add", "path": "/protocol/notifications", "value": ["notifications/"]}, "data.mcpauthz.scopes.protocol.notifications[0]: want a notifications/* method, got string \"notifications/\""],
	[{"op": "add", "path": "/protocol/responders", "value": "human"}, "data.mcpauthz.scopes.protocol.responders: want a list of principal kinds (human, agent_for_user, agent), got string \"human\""],
	[{"op": "add", "path": "/protocol/transport_kinds", "value": ["notification"]}, "data.mcpauthz.scopes.protocol.transport_kinds[0]: want stream or end_session, got string \"notification\""],
	[{"op": "add", "path": "/protocol/responders", "value": ["people"]}, "data.mcpauthz.scopes.protocol.responders[0]: want human, agent_for_user or agent, got string \"people\""],
	[{"op": "remove", "path": "/protocol/notifications"}, "data.mcpauthz.scopes.protocol.notifications is missing: want a list of notifications/* methods"],
	[{"op": "add", "path": "/protocol/extra", "value": []}, "data.mcpauthz.scopes.protocol.extra is not a known key"],
]

data_error_mismatches(cases) := {[c, errs] |
	some c in cases
	bad := json.patch(data.mcpauthz.scopes, [c[0]])
	errs := mcpauthz.data_errors with data.mcpauthz.scopes as bad
	not c[1] in errs
}

# Each data_errors evaluation runs every check: six cases per test keep
# each test well inside the test timeout, even traced for coverage.
test_data_error_cases if count(data_error_cases) == 26

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

test_hostile_data_types_refused_4 if {
	data_error_mismatches(array.slice(data_error_cases, 24, 30)) == set()
}

test_missing_data_refused if {
	every bad in [null, [], "scopes"] {
		errs := mcpauthz.data_errors with data.mcpauthz.scopes as bad
		errs == {"data.mcpauthz.scopes is missing or not an object (data.json nests it under mcpauthz.scopes)"}
	}
}
