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

decide(inp) := d if {
	d := mcpauthz.decision with input as inp
}

# In data.json: doc-1 and doc-3 belong to acme, doc-2 to globex.
good_args := {
	"readDocument": {"id": "acme/doc-1"},
	"createDocument": {"title": "Plan"},
	"updateDocument": {"id": "doc-3", "content": "new"},
	"deleteDocument": {"id": "acme/doc-3"},
	"shareDocument": {"id": "doc-1", "with": "bob"},
	"compareDocuments": {"documents": ["doc-1", "acme/doc-3"], "options": {"baseline": "doc-1", "ignoreWhitespace": true}},
}

# want[kind][tool]: the decision's allow for well-formed, in-org calls.
want := {
	"human": {"readDocument": true, "createDocument": true, "updateDocument": true, "deleteDocument": true, "shareDocument": true, "compareDocuments": true},
	"agent_for_user": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false, "compareDocuments": true},
	"agent": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false, "compareDocuments": true},
}

kind_tool_mismatches contains [kind, tool, d] if {
	some kind, row in want
	some tool, allowed in row
	d := decide(call(kind, "acme", tool, good_args[tool]))
	d.allow != allowed
}

test_kind_tool_matrix if {
	count(want) == 3
	count(good_args) == 6
	kind_tool_mismatches == set()
}

test_allow_shape if {
	decide(call("human", "acme", "readDocument", {"id": "acme/doc-1"})) == {"allow": true, "reason": "allowed", "http_status": 200}
}

test_only_writers_write if {
	every kind in ["agent", "agent_for_user", "anonymous", ""] {
		d := decide(call(kind, "acme", "updateDocument", good_args.updateDocument))
		d.reason == "agent_read_only"
		d.message == sprintf("principal kind %q may only call read-only tools; updateDocument changes data", [kind])
		d.http_status == 403
	}
}

# Organization checks, table driven: [document id, caller org, reason].
org_cases := [
	["acme/doc-1", "acme", "allowed"],
	["doc-1", "acme", "allowed"],
	["doc-3", "acme", "allowed"],
	["doc-2", "globex", "allowed"],
	["globex/doc-2", "globex", "allowed"],
	["doc-2", "acme", "cross_org"],
	["globex/doc-2", "acme", "cross_org"],
	["doc-1", "globex", "cross_org"],
	["doc-404", "acme", "unknown_document"],
	["acme/doc-404", "acme", "unknown_document"],
]

org_mismatches contains [c, d.reason] if {
	some c in org_cases
	d := decide(call("human", c[1], "readDocument", {"id": c[0]}))
	d.reason != c[2]
}

test_org_table if {
	org_mismatches == set()
}

test_cross_org_message if {
	decide(call("agent_for_user", "acme", "readDocument", {"id": "globex/doc-2"})) == {
		"allow": false,
		"reason": "cross_org",
		"message": "document \"globex/doc-2\" is outside organization \"acme\"",
		"http_status": 403,
	}
}

test_unknown_document_message if {
	d := decide(call("human", "acme", "deleteDocument", {"id": "doc-404"}))
	d.message == "document \"doc-404\" is not known"
	d.http_status == 403
}

test_create_needs_no_document if {
	decide(call("human", "acme", "createDocument", {"title": "x", "content": "y"})).allow == true
	decide(call("human", "acme", "createDocument", {"title": "x"})).allow == true
}

# Argument checks: [tool, arguments, message].
arg_cases := [
	["readDocument", null, "argument \"id\" is required"],
	["readDocument", {}, "argument \"id\" is required"],
	["readDocument", ["acme/doc-1"], "arguments must be a JSON object"],
	["readDocument", {"id": 7}, "argument \"id\" must be a document id (string), got number"],
	["readDocument", {"id": null}, "argument \"id\" must be a document id (string), got null"],
	["readDocument", {"id": ""}, "argument \"id\" is not a document id: want <id> or <org>/<id>, each a letter or digit then up to 63 of A-Z a-z 0-9 _ -"],
	["createDocument", {}, "argument \"title\" is required"],
	["createDocument", {"title": ["a"]}, "argument \"title\" must be a string, got array"],
	["updateDocument", {"id": "acme/doc-1"}, "argument \"content\" is required"],
	["shareDocument", {"id": "acme/doc-1", "with": {"user": "bob"}}, "argument \"with\" must be a string, got object"],
	["compareDocuments", {}, "argument \"documents\" is required"],
	["compareDocuments", {"documents": "doc-1"}, "argument \"documents\" must be an array, got string"],
	["compareDocuments", {"documents": ["doc-1", 7]}, "argument \"documents[1]\" must be a document id (string), got number"],
	["compareDocuments", {"documents": [], "options": {"baseline": true}}, "argument \"options.baseline\" must be a document id (string), got boolean"],
	["compareDocuments", {"documents": [], "options": "fast"}, "argument \"options\" must be an object, got string"],
]

arg_mismatches contains [c, d] if {
	some c in arg_cases
	d := decide(call("human", "acme", c[0], c[1]))
	d != {"allow": false, "reason": "invalid_arguments", "message": c[2], "http_status": 400}
}

test_argument_table if {
	count(arg_cases) == 15
	arg_mismatches == set()
}

# A declared key of a nested object is required when the object is present.
test_nested_required if {
	d := mcpauthz.decision with input as call("human", "acme", "compareDocuments", {"documents": ["doc-1"], "options": {"ignoreWhitespace": true}})
		with data.mcpauthz.abac.tools.compareDocuments.args["options.baseline"].optional as false
	d.message == "argument \"options.baseline\" is required"
	o := mcpauthz.decision with input as call("human", "acme", "compareDocuments", {"documents": ["doc-1"]})
		with data.mcpauthz.abac.tools.compareDocuments.args["options.baseline"].optional as false
	o.allow == true
}

test_first_argument_error_is_deterministic if {
	decide(call("human", "acme", "shareDocument", {})).message == "argument \"id\" is required"
}

test_writers_before_arguments if {
	decide(call("agent", "acme", "deleteDocument", null)).reason == "agent_read_only"
}

test_arguments_before_org if {
	decide(call("human", "acme", "updateDocument", {"id": "globex/x"})).reason == "invalid_arguments"
}

test_unknown_tool if {
	d := decide(call("human", "acme", "formatDisk", {}))
	d.reason == "unknown_tool"
	d.message == "tool \"formatDisk\" is not known"
}

test_no_organization if {
	every o in ["", null, 42] {
		d := decide(call("human", o, "readDocument", {"id": "acme/doc-1"}))
		d.reason == "no_organization"
		d.http_status == 403
	}
}

test_unauthenticated if {
	inp := json.patch(call("human", "acme", "readDocument", {"id": "acme/doc-1"}), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	d := decide(inp)
	d.reason == "unauthenticated"
	d.http_status == 401
}

test_unauthenticated_missing_principal if {
	decide({"mcp": {"kind": "request", "method": "ping"}}).reason == "unauthenticated"
}

# Resources: [method, uri, org, reason].
resource_cases := [
	["resources/read", "docs://acme/doc-1", "acme", "allowed"],
	["resources/subscribe", "docs://acme/doc-3", "acme", "allowed"],
	["resources/unsubscribe", "docs://globex/doc-2", "globex", "allowed"],
	["resources/read", "docs://globex/doc-2", "acme", "cross_org"],
	["resources/read", "docs://acme/doc-404", "acme", "unknown_document"],
	["resources/read", "docs://acme", "acme", "unknown_resource"],
	["resources/read", "docs://acme/", "acme", "unknown_resource"],
	["resources/read", "docs:///doc-1", "acme", "unknown_resource"],
	["resources/read", "docs://acme/a/b", "acme", "unknown_resource"],
	["resources/read", "file:///etc/passwd", "acme", "unknown_resource"],
]

resource_mismatches contains [c, d.reason] if {
	some c in resource_cases
	d := decide(resource("agent", c[2], c[0], c[1]))
	d.reason != c[3]
}

test_resource_table if {
	resource_mismatches == set()
}

test_resource_messages if {
	decide(resource("human", "acme", "resources/read", "docs://globex/doc-2")).message == "document \"docs://globex/doc-2\" is outside organization \"acme\""
	u := decide(resource("human", "acme", "resources/read", "s3://b/k"))
	u.message == "resource URI is not docs://<org>/<id> (each a letter or digit then up to 63 of A-Z a-z 0-9 _ -)"
	u.http_status == 403
}

test_housekeeping if {
	every m in ["initialize", "server/discover", "ping", "logging/setLevel", "tools/list", "resources/list", "prompts/list"] {
		decide(method_input("request", m)) == {"allow": true, "reason": "housekeeping", "http_status": 200}
	}
	every m in ["notifications/initialized", "notifications/cancelled", "notifications/progress"] {
		decide(method_input("notification", m)).reason == "housekeeping"
	}
	every k in ["stream", "end_session"] {
		decide(method_input(k, "")).reason == "housekeeping"
	}
}

test_housekeeping_without_org if {
	inp := json.patch(method_input("request", "tools/list"), [{"op": "replace", "path": "/principal/org", "value": ""}])
	decide(inp).allow == true
}

test_other_methods_denied if {
	d := decide(method_input("request", "prompts/get"))
	d.reason == "method_not_allowed"
	d.message == "request \"prompts/get\" is not allowed on this server"

	# ref/resource names a URI template (docs://{org}/{id}), which would
	# complete other organizations' ids.
	decide(method_input("request", "completion/complete")).reason == "method_not_allowed"
}

# ============================================================================
# HOSTILE INPUTS: shapes an attacker tries (issue 15). Each must be refused.
# ============================================================================

# --- the organization comes from data, never from the caller's text ---------

test_hostile_org_prefix_of_another_orgs_document if {
	d := decide(call("human", "acme", "readDocument", {"id": "acme/doc-2"}))
	d == {
		"allow": false,
		"reason": "document_org_mismatch",
		"message": "document \"acme/doc-2\" names organization \"acme\" but belongs to \"globex\"",
		"http_status": 403,
	}

	# a globex caller cannot launder its own document under acme's name either
	decide(call("human", "globex", "readDocument", {"id": "acme/doc-2"})).reason == "document_org_mismatch"
}

test_hostile_org_prefix_in_resource_uri if {
	d := decide(resource("agent", "acme", "resources/read", "docs://acme/doc-2"))
	d.reason == "document_org_mismatch"
	d.message == "document \"docs://acme/doc-2\" names organization \"acme\" but belongs to \"globex\""
}

test_hostile_qualified_id_missing_from_data if {
	decide(call("human", "acme", "readDocument", {"id": "acme/doc-9"})).reason == "unknown_document"
	decide(resource("human", "acme", "resources/read", "docs://acme/doc-9")).reason == "unknown_document"
}

# --- ids and URIs match the grammar before any ownership check --------------

hostile_ids := [
	"acme/../globex/doc-2", "../doc-2", "acme/..", "..", ".", "doc.1",
	"acme%2Fdoc-2", "acme%2fdoc-1", "%2e%2e/doc-2", "acme/doc-1%00",
	"acme\\doc-2", "acme\\..\\doc-2",
	"acme／doc-2", "acme∕doc-2", "acme⁄doc-2", "ａcme/doc-1", "аcme/doc-1",
	"acme/doc-1?org=globex", "acme/doc-1#globex", "doc-1?x", "doc-1#x",
	"acme/doc-1/", "/doc-1", "acme/", "acme//doc-1", "acme/a/b",
	"acme/doc-1 ", " doc-1", "doc-1\n", "doc-1\u0000", "doc 1", "",
]

hostile_id_accepted contains [id, d] if {
	some id in hostile_ids
	d := decide(call("human", "acme", "readDocument", {"id": id}))
	d.message != "argument \"id\" is not a document id: want <id> or <org>/<id>, each a letter or digit then up to 63 of A-Z a-z 0-9 _ -"
}

test_hostile_id_grammar if {
	count(hostile_ids) == 32
	hostile_id_accepted == set()
}

hostile_uris := [
	"docs://acme/../globex/doc-2", "docs://acme/doc-1/../../globex/doc-2", "docs://acme/./doc-1",
	"docs://acme%2Fdoc-1", "docs://acme/doc%2D1", "docs://acme\\doc-1", "docs://acme／doc-1",
	"docs://acme/doc-1?org=globex", "docs://acme/doc-1#globex", "docs://acme/doc-1/",
	"DOCS://acme/doc-1", "Docs://acme/doc-1", "docs:/acme/doc-1", "docs:///acme/doc-1",
	"docs://user@acme/doc-1", "docs://acme:443/doc-1", "docs://acme/doc-1 ", " docs://acme/doc-1",
	"docs://ａcme/doc-1",
]

hostile_uri_accepted contains [uri, d] if {
	some uri in hostile_uris
	d := decide(resource("human", "acme", "resources/read", uri))
	d.reason != "unknown_resource"
}

test_hostile_uri_grammar if {
	count(hostile_uris) == 19
	hostile_uri_accepted == set()
}

# --- arguments the tool does not declare are refused -------------------------

# [tool, arguments, first message]. Go's encoding/json binds "DocumentId"
# or "ID" to a field tagged "id", so a case variant next to (or instead of)
# the declared key must never pass unchecked.
undeclared_cases := [
	["readDocument", {"DocumentId": "globex/doc-2"}, "argument \"DocumentId\" is not declared by readDocument"],
	["readDocument", {"id": "doc-1", "ID": "doc-2"}, "argument \"ID\" is not declared by readDocument"],
	["readDocument", {"id": "doc-1", "Id": "doc-2"}, "argument \"Id\" is not declared by readDocument"],
	["readDocument", {"id": "doc-1", "documentId": "doc-2"}, "argument \"documentId\" is not declared by readDocument"],
	["readDocument", {"id": "doc-1", "ｉd": "doc-2"}, "argument \"ｉd\" is not declared by readDocument"],
	["createDocument", {"title": "x", "id": "globex/doc-2"}, "argument \"id\" is not declared by createDocument"],
	["compareDocuments", {"documents": ["doc-1"], "options.baseline": "doc-2"}, "argument \"options.baseline\" is not declared by compareDocuments"],
	["compareDocuments", {"documents": ["doc-1"], "documents[]": "doc-2"}, "argument \"documents[]\" is not declared by compareDocuments"],
	["compareDocuments", {"documents": ["doc-1"], "options": {"base": "doc-2"}}, "argument \"options.base\" is not declared by compareDocuments"],
	["compareDocuments", {"documents": ["doc-1"], "options": {"Baseline": "doc-2"}}, "argument \"options.Baseline\" is not declared by compareDocuments"],
	["compareDocuments", {"documents": ["doc-1"], "options": {"baseline": "doc-1", "extra": {"id": "globex/doc-2"}}}, "argument \"options.extra\" is not declared by compareDocuments"],
	["compareDocuments", {"documents": [["doc-2"]]}, "argument \"documents[0]\" must be a document id (string), got array"],
]

undeclared_mismatches contains [c, d] if {
	some c in undeclared_cases
	d := decide(call("human", "acme", c[0], c[1]))
	d != {"allow": false, "reason": "invalid_arguments", "message": c[2], "http_status": 400}
}

test_hostile_undeclared_arguments if {
	count(undeclared_cases) == 12
	undeclared_mismatches == set()
}

# --- every id is checked, at any depth ---------------------------------------

# [arguments of compareDocuments, reason]
nested_cases := [
	[{"documents": ["doc-1", "doc-2"]}, "cross_org"],
	[{"documents": ["doc-1", "globex/doc-2"]}, "cross_org"],
	[{"documents": ["doc-1", "acme/doc-2"]}, "document_org_mismatch"],
	[{"documents": ["doc-1", "doc-404"]}, "unknown_document"],
	[{"documents": ["doc-1"], "options": {"baseline": "doc-2"}}, "cross_org"],
	[{"documents": ["doc-1"], "options": {"baseline": "acme/doc-2"}}, "document_org_mismatch"],
	[{"documents": ["doc-1"], "options": {"baseline": "../doc-2"}}, "invalid_arguments"],
	[{"documents": ["acme/../doc-2"]}, "invalid_arguments"],
	[{"documents": ["doc-1", "doc-3"], "options": {"baseline": "doc-3"}}, "allowed"],
]

nested_mismatches contains [c, d.reason] if {
	some c in nested_cases
	d := decide(call("agent", "acme", "compareDocuments", c[0]))
	d.reason != c[1]
}

test_hostile_nested_ids if {
	count(nested_cases) == 9
	nested_mismatches == set()
	decide(call("human", "acme", "compareDocuments", {"documents": ["doc-1"], "options": {"baseline": "doc-2"}})).message == "document \"doc-2\" is outside organization \"acme\""
	decide(call("human", "acme", "compareDocuments", {"documents": ["doc-1"], "options": {"baseline": "../doc-2"}})).message == "argument \"options.baseline\" is not a document id: want <id> or <org>/<id>, each a letter or digit then up to 63 of A-Z a-z 0-9 _ -"
}

# --- methods are matched exactly, together with the message kind -------------

test_hostile_notification_with_id if {
	d := decide(method_input("request", "notifications/initialized"))
	d.reason == "method_not_allowed"
	d.message == "\"notifications/initialized\" with an id is a request, not a notification"
}

test_hostile_request_names_as_notifications if {
	every m in ["ping", "tools/list", "resources/read", "tools/call"] {
		d := decide(method_input("notification", m))
		d.reason == "method_not_allowed"
		d.message == sprintf("notification %q is not allowed on this server", [m])
	}
	inp := json.patch(resource("human", "acme", "resources/read", "docs://acme/doc-1"), [{"op": "replace", "path": "/mcp/kind", "value": "notification"}])
	decide(inp).reason == "method_not_allowed"
}

test_hostile_method_spellings if {
	every m in ["Tools/list", "tools/list ", "resources/Read", "notifications/initialized/x", "ping\u0000"] {
		decide(method_input("request", m)).reason == "method_not_allowed"
	}
}

# --- client JSON-RPC responses: only a person present may answer -------------

response_from(kind) := json.patch(method_input("response", ""), [{"op": "replace", "path": "/principal/kind", "value": kind}])

test_hostile_response_by_agent_alone if {
	d := decide(response_from("agent"))
	d == {
		"allow": false,
		"reason": "response_not_allowed",
		"message": "principal kind \"agent\" may not answer server requests (elicitation, sampling, roots): a person must be present",
		"http_status": 403,
	}
	decide(response_from("human")).reason == "housekeeping"
	decide(response_from("agent_for_user")).reason == "housekeeping"
}

# --- data with the wrong type fails closed, and refuses the bundle ------------

test_hostile_read_only_as_string_fails_closed if {
	# The string "false" is not false: an old policy read it as true and
	# let agents write. Here a write tool stays a write tool...
	d := mcpauthz.decision with input as call("agent", "acme", "updateDocument", good_args.updateDocument)
		with data.mcpauthz.abac.tools.updateDocument.read_only as "false"
	d.reason == "agent_read_only"

	# ...and a read-only tool spelt "true" is not read-only either.
	r := mcpauthz.decision with input as call("agent", "acme", "readDocument", {"id": "doc-1"})
		with data.mcpauthz.abac.tools.readDocument.read_only as "true"
	r.reason == "agent_read_only"
}

test_hostile_untyped_declaration_accepts_nothing if {
	# the declaration format of an older abac bundle: "args": {"id": "string"}
	d := mcpauthz.decision with input as call("human", "acme", "readDocument", {"id": "doc-2"})
		with data.mcpauthz.abac.tools.readDocument.args as {"id": "string"}
	d.reason == "invalid_arguments"
	d.message == "argument \"id\" must be of an unknown type, got string"
}

test_hostile_writers_as_string_fails_closed if {
	d := mcpauthz.decision with input as call("human", "acme", "createDocument", {"title": "x"})
		with data.mcpauthz.abac.writers as "human"
	d.reason == "agent_read_only"
}

test_shipped_data_is_well_formed if {
	mcpauthz.data_errors == set()
}

# [JSON patch of data.mcpauthz.abac, a problem data_errors must report]
data_error_cases := [
	[{"op": "add", "path": "/tools/readDocument/read_only", "value": "false"}, "data.mcpauthz.abac.tools.readDocument.read_only: want a boolean, got string \"false\""],
	[{"op": "add", "path": "/tools/readDocument/args", "value": ["id"]}, "data.mcpauthz.abac.tools.readDocument.args: want an object: argument name -> {type, optional}, got array"],
	[{"op": "add", "path": "/tools/readDocument/args/id", "value": "string"}, "data.mcpauthz.abac.tools.readDocument.args.id: want an object {type, optional}, got string \"string\""],
	[{"op": "add", "path": "/tools/readDocument/args/id/type", "value": "documentId"}, "data.mcpauthz.abac.tools.readDocument.args.id.type: want one of array, boolean, document_id, number, object, string, got string \"documentId\""],
	[{"op": "add", "path": "/tools/readDocument/args/id/optional", "value": "yes"}, "data.mcpauthz.abac.tools.readDocument.args.id.optional: want a boolean, got string \"yes\""],
	[{"op": "add", "path": "/tools/readDocument/args/id/required", "value": true}, "data.mcpauthz.abac.tools.readDocument.args.id.required is not a known key"],
	[{"op": "add", "path": "/tools/readDocument/args/a..b", "value": {"type": "string"}}, "data.mcpauthz.abac.tools.readDocument.args: \"a..b\" is not an argument name (names of A-Z a-z 0-9 _ -, joined by \".\" or followed by \"[]\")"],
	[{"op": "add", "path": "/tools/readDocument/args/meta.id", "value": {"type": "document_id"}}, "data.mcpauthz.abac.tools.readDocument.args.meta.id: \"meta\" must be declared with type object"],
	[{"op": "add", "path": "/tools/compareDocuments/args/options", "value": {"type": "array"}}, "data.mcpauthz.abac.tools.compareDocuments.args.options.baseline: \"options\" must be declared with type object"],
	[{"op": "remove", "path": "/tools/compareDocuments/args/documents[]"}, "data.mcpauthz.abac.tools.compareDocuments.args.documents: an array needs its elements declared as \"documents[]\""],
	[{"op": "add", "path": "/tools/readDocument/readonly", "value": true}, "data.mcpauthz.abac.tools.readDocument.readonly is not a known key"],
	[{"op": "remove", "path": "/tools/readDocument/read_only"}, "data.mcpauthz.abac.tools.readDocument.read_only is missing"],
	[{"op": "add", "path": "/tools/readDocument", "value": true}, "data.mcpauthz.abac.tools.readDocument: want an object with read_only and args, got boolean true"],
	[{"op": "add", "path": "/tools/read document", "value": {"read_only": true, "args": {}}}, "data.mcpauthz.abac.tools: \"read document\" is not an MCP tool name"],
	[{"op": "add", "path": "/documents/doc-1", "value": {"org": "acme/x"}}, "data.mcpauthz.abac.documents.doc-1: want an object {\"org\": <organization>}, got object"],
	[{"op": "add", "path": "/documents/doc-1", "value": "acme"}, "data.mcpauthz.abac.documents.doc-1: want an object {\"org\": <organization>}, got string \"acme\""],
	[{"op": "add", "path": "/documents/doc.1", "value": {"org": "acme"}}, "data.mcpauthz.abac.documents: \"doc.1\" is not a document id (a letter or digit then up to 63 of A-Z a-z 0-9 _ -)"],
	[{"op": "add", "path": "/resource_prefix", "value": "docs:"}, "data.mcpauthz.abac.resource_prefix: want a URI scheme and \"://\", e.g. \"docs://\", got string \"docs:\""],
	[{"op": "add", "path": "/resource_methods", "value": ["resources/read", "resources/list"]}, "data.mcpauthz.abac.resource_methods[1]: want resources/read, resources/subscribe or resources/unsubscribe, got string \"resources/list\""],
	[{"op": "add", "path": "/writers", "value": ["human", "admin"]}, "data.mcpauthz.abac.writers[1]: want human, agent_for_user or agent, got string \"admin\""],
	[{"op": "add", "path": "/writers", "value": "human"}, "data.mcpauthz.abac.writers: want a list of the principal kinds that may call tools that are not read-only, got string \"human\""],
	[{"op": "add", "path": "/document_args", "value": ["id"]}, "data.mcpauthz.abac.document_args is not a known key"],
	[{"op": "remove", "path": "/documents"}, "data.mcpauthz.abac.documents is missing: want an object: document id -> {org}"],
	[{"op": "add", "path": "/protocol/requests", "value": ["ping", "resources/read"]}, "data.mcpauthz.abac.protocol.requests[1]: want a request method other than tools/call, resources/read|subscribe|unsubscribe and notifications/*, got string \"resources/read\""],
	[{"op": "add", "path": "/protocol/notifications", "value": "notifications/initialized"}, "data.mcpauthz.abac.protocol.notifications: want a list of notifications/* methods, got string \"notifications/initialized\""],
	[{"op": "add", "path": "/protocol/notifications", "value": ["notifications/"]}, "data.mcpauthz.abac.protocol.notifications[0]: want a notifications/* method, got string \"notifications/\""],
	[{"op": "add", "path": "/protocol/transport_kinds", "value": ["response"]}, "data.mcpauthz.abac.protocol.transport_kinds[0]: want stream or end_session, got string \"response\""],
	[{"op": "add", "path": "/protocol/responders", "value": ["agents"]}, "data.mcpauthz.abac.protocol.responders[0]: want human, agent_for_user or agent, got string \"agents\""],
	[{"op": "remove", "path": "/protocol/requests"}, "data.mcpauthz.abac.protocol.requests is missing: want a list of request methods"],
	[{"op": "add", "path": "/protocol/request", "value": []}, "data.mcpauthz.abac.protocol.request is not a known key"],
]

data_error_mismatches(cases) := {[c, errs] |
	some c in cases
	bad := json.patch(data.mcpauthz.abac, [c[0]])
	errs := mcpauthz.data_errors with data.mcpauthz.abac as bad
	not c[1] in errs
}

# Each data_errors evaluation runs every check: six cases per test keep
# each test well inside the test timeout, even traced for coverage.
test_data_error_cases if count(data_error_cases) == 30

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
	every bad in [null, [], "abac"] {
		errs := mcpauthz.data_errors with data.mcpauthz.abac as bad
		errs == {"data.mcpauthz.abac is missing or not an object (data.json nests it under mcpauthz.abac)"}
	}
}
