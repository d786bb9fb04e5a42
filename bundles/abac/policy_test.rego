package mcpauthz.abac_test

import data.mcpauthz

call(kind, org, tool, arguments) := {
	"version": "mcpauthz.input/v1",
	"request": {"id": "r1", "method": "POST", "path": "/mcp", "headers": {}},
	"mcp": {"kind": "request", "method": "tools/call", "tool": tool, "arguments": arguments},
	"principal": {"authenticated": true, "kind": kind, "subject": "alice", "org": org, "scopes": [], "claims": {}},
	"server": {"id": "docs", "scopes": []},
}

resource(kind, org, method, uri) := json.patch(call(kind, org, "", null), [
	{"op": "replace", "path": "/mcp/method", "value": method},
	{"op": "add", "path": "/mcp/uri", "value": uri},
])

method_input(kind, method) := json.patch(call("human", "acme", "", null), [
	{"op": "replace", "path": "/mcp/kind", "value": kind},
	{"op": "replace", "path": "/mcp/method", "value": method},
])

good_args := {
	"readDocument": {"id": "acme/doc-9"},
	"createDocument": {"title": "Plan"},
	"updateDocument": {"id": "acme/doc-9", "content": "new"},
	"deleteDocument": {"id": "acme/doc-9"},
	"shareDocument": {"id": "acme/doc-9", "with": "bob"},
}

# want[kind][tool]: the decision's allow for well-formed, in-org calls.
want := {
	"human": {"readDocument": true, "createDocument": true, "updateDocument": true, "deleteDocument": true, "shareDocument": true},
	"agent_for_user": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false},
	"agent": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false},
}

kind_tool_mismatches contains [kind, tool, d] if {
	some kind, row in want
	some tool, allowed in row
	d := mcpauthz.decision with input as call(kind, "acme", tool, good_args[tool])
	d.allow != allowed
}

test_kind_tool_matrix if {
	count(want) == 3
	count(good_args) == 5
	kind_tool_mismatches == set()
}

test_allow_shape if {
	d := mcpauthz.decision with input as call("human", "acme", "readDocument", {"id": "acme/doc-1"})
	d == {"allow": true, "reason": "allowed", "http_status": 200}
}

test_agents_read_only_reason if {
	every kind in ["agent", "agent_for_user"] {
		d := mcpauthz.decision with input as call(kind, "acme", "updateDocument", good_args.updateDocument)
		d.reason == "agent_read_only"
		d.message == "agents may only call read-only tools; updateDocument changes data"
		d.http_status == 403
	}
}

# Organization checks, table driven: [document id, caller org, reason or "allowed"].
org_cases := [
	["acme/doc-9", "acme", "allowed"],
	["globex/doc-9", "acme", "cross_org"],
	["doc-1", "acme", "allowed"], # doc-1 is listed in data.json under acme
	["doc-2", "acme", "cross_org"], # doc-2 belongs to globex
	["doc-2", "globex", "allowed"],
	["doc-404", "acme", "unknown_document"],
	["acme/a/b", "acme", "unknown_document"],
	["/doc-9", "acme", "unknown_document"],
	["acme/", "acme", "unknown_document"],
]

org_mismatches contains [c, d.reason] if {
	some c in org_cases
	d := mcpauthz.decision with input as call("human", c[1], "readDocument", {"id": c[0]})
	d.reason != c[2]
}

test_org_table if {
	org_mismatches == set()
}

test_cross_org_message if {
	d := mcpauthz.decision with input as call("agent_for_user", "acme", "readDocument", {"id": "globex/q3"})
	d == {
		"allow": false,
		"reason": "cross_org",
		"message": "document \"globex/q3\" is outside organization \"acme\"",
		"http_status": 403,
	}
}

test_document_id_alias_checked if {
	d := mcpauthz.decision with input as call("human", "acme", "readDocument", {"id": "acme/doc-9", "documentId": "globex/x"})
	d.reason == "cross_org"
	d.message == "document \"globex/x\" is outside organization \"acme\""
}

test_unknown_document_message if {
	d := mcpauthz.decision with input as call("human", "acme", "deleteDocument", {"id": "doc-404"})
	d.message == "document \"doc-404\" is not known"
	d.http_status == 403
}

test_create_needs_no_document if {
	d := mcpauthz.decision with input as call("human", "acme", "createDocument", {"title": "x", "content": "y"})
	d.allow == true
}

# Argument checks: [tool, arguments, message].
arg_cases := [
	["readDocument", null, "arguments must be a JSON object"],
	["readDocument", ["acme/doc-1"], "arguments must be a JSON object"],
	["readDocument", {}, "argument \"id\" is required"],
	["readDocument", {"id": 7}, "argument \"id\" must be a string, got number"],
	["readDocument", {"id": null}, "argument \"id\" must be a string, got null"],
	["readDocument", {"id": ""}, "argument \"id\" must not be empty"],
	["readDocument", {"id": "acme/doc-1", "documentId": true}, "argument \"documentId\" must be a string, got boolean"],
	["readDocument", {"id": "acme/doc-1", "documentId": ""}, "argument \"documentId\" must not be empty"],
	["createDocument", {}, "argument \"title\" is required"],
	["createDocument", {"title": ["a"]}, "argument \"title\" must be a string, got array"],
	["updateDocument", {"id": "acme/doc-1"}, "argument \"content\" is required"],
	["shareDocument", {"id": "acme/doc-1", "with": {"user": "bob"}}, "argument \"with\" must be a string, got object"],
]

arg_mismatches contains [c, d] if {
	some c in arg_cases
	d := mcpauthz.decision with input as call("human", "acme", c[0], c[1])
	d != {"allow": false, "reason": "invalid_arguments", "message": c[2], "http_status": 400}
}

test_argument_table if {
	count(arg_cases) == 12
	arg_mismatches == set()
}

test_first_argument_error_is_deterministic if {
	d := mcpauthz.decision with input as call("human", "acme", "shareDocument", {})
	d.message == "argument \"id\" is required"
}

test_agent_read_only_before_arguments if {
	d := mcpauthz.decision with input as call("agent", "acme", "deleteDocument", null)
	d.reason == "agent_read_only"
}

test_arguments_before_org if {
	d := mcpauthz.decision with input as call("human", "acme", "updateDocument", {"id": "globex/x"})
	d.reason == "invalid_arguments"
}

test_unknown_tool if {
	d := mcpauthz.decision with input as call("human", "acme", "formatDisk", {})
	d.reason == "unknown_tool"
	d.message == "tool \"formatDisk\" is not known"
}

test_no_organization if {
	every o in ["", null, 42] {
		d := mcpauthz.decision with input as call("human", o, "readDocument", {"id": "acme/doc-1"})
		d.reason == "no_organization"
		d.http_status == 403
	}
}

test_unauthenticated if {
	inp := json.patch(call("human", "acme", "readDocument", {"id": "acme/doc-1"}), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	d := mcpauthz.decision with input as inp
	d.reason == "unauthenticated"
	d.http_status == 401
}

test_unauthenticated_missing_principal if {
	d := mcpauthz.decision with input as {"mcp": {"kind": "request", "method": "ping"}}
	d.reason == "unauthenticated"
}

# Resources: [method, uri, org, reason].
resource_cases := [
	["resources/read", "docs://acme/doc-1", "acme", "allowed"],
	["resources/subscribe", "docs://acme/doc-1", "acme", "allowed"],
	["resources/read", "docs://globex/doc-1", "acme", "cross_org"],
	["resources/read", "docs://acme", "acme", "unknown_resource"],
	["resources/read", "docs://acme/", "acme", "unknown_resource"],
	["resources/read", "docs:///doc-1", "acme", "unknown_resource"],
	["resources/read", "docs://acme/a/b", "acme", "unknown_resource"],
	["resources/read", "file:///etc/passwd", "acme", "unknown_resource"],
]

resource_mismatches contains [c, d.reason] if {
	some c in resource_cases
	d := mcpauthz.decision with input as resource("agent", c[2], c[0], c[1])
	d.reason != c[3]
}

test_resource_table if {
	resource_mismatches == set()
}

test_resource_messages if {
	d := mcpauthz.decision with input as resource("human", "acme", "resources/read", "docs://globex/q")
	d.message == "resource \"docs://globex/q\" is outside organization \"acme\""
	u := mcpauthz.decision with input as resource("human", "acme", "resources/read", "s3://b/k")
	u.message == "resource \"s3://b/k\" is not a docs://<org>/<id> URI"
}

test_housekeeping if {
	every m in ["initialize", "server/discover", "ping", "tools/list", "resources/list", "prompts/list", "notifications/initialized"] {
		d := mcpauthz.decision with input as method_input("request", m)
		d == {"allow": true, "reason": "housekeeping", "http_status": 200}
	}
	every k in ["response", "stream", "end_session"] {
		d := mcpauthz.decision with input as method_input(k, "")
		d.reason == "housekeeping"
	}
}

test_housekeeping_without_org if {
	inp := json.patch(method_input("request", "tools/list"), [{"op": "replace", "path": "/principal/org", "value": ""}])
	d := mcpauthz.decision with input as inp
	d.allow == true
}

test_other_methods_denied if {
	d := mcpauthz.decision with input as method_input("request", "prompts/get")
	d.reason == "method_not_allowed"
	d.message == "method \"prompts/get\" is not allowed on this server"
}
