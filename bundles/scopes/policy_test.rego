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
	u := decide(method_call(all_scopes, "resources/subscribe"))
	u.reason == "method_not_allowed"
	u.message == "method \"resources/subscribe\" is not allowed on this server"
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

test_housekeeping if {
	every m in ["initialize", "server/discover", "ping", "tools/list", "notifications/initialized"] {
		d := decide(method_call([], m))
		d.allow == true
		d.reason == "housekeeping"
	}
	every k in ["response", "stream", "end_session"] {
		decide(json.patch(method_call([], ""), [{"op": "replace", "path": "/mcp/kind", "value": k}])).allow == true
	}
}
