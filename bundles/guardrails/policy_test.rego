package mcpauthz.guardrails_test

import data.mcpauthz

tools := ["readDocument", "createDocument", "updateDocument", "deleteDocument", "shareDocument"]

base := {
	"version": "mcpauthz.input/v1",
	"request": {"id": "r1", "method": "POST", "path": "/mcp", "headers": {}},
	"mcp": {"kind": "request", "method": "tools/call", "tool": "", "arguments": {"id": "doc-1"}},
	"principal": {
		"authenticated": true, "kind": "human", "subject": "alice", "client_id": "chat-app",
		"scopes": [], "actor": null, "chain": [], "claims": {"roles": []},
	},
	"server": {"id": "docs", "scopes": []},
}

human(roles, tool) := json.patch(base, [
	{"op": "replace", "path": "/principal/claims/roles", "value": roles},
	{"op": "replace", "path": "/mcp/tool", "value": tool},
])

# An agent acting for alice (who has roles) through actor `agent`.
for_user(agent, roles, tool) := json.patch(human(roles, tool), [
	{"op": "replace", "path": "/principal/kind", "value": "agent_for_user"},
	{"op": "replace", "path": "/principal/actor", "value": {"sub": agent, "client_id": "", "iss": ""}},
])

# An autonomous agent: sub == client_id, no roles.
alone(agent, tool) := json.patch(base, [
	{"op": "replace", "path": "/principal/kind", "value": "agent"},
	{"op": "replace", "path": "/principal/subject", "value": agent},
	{"op": "replace", "path": "/principal/client_id", "value": agent},
	{"op": "replace", "path": "/mcp/tool", "value": tool},
])

decide(inp) := d if {
	d := mcpauthz.decision with input as inp
}

# --- agent alone: explicit per-server allow-list ----------------------------

# want_alone[agent][tool]
want_alone := {
	"summarizer": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false},
	"drafter": {"readDocument": true, "createDocument": true, "updateDocument": true, "deleteDocument": false, "shareDocument": false},
	"janitor": {"readDocument": true, "createDocument": false, "updateDocument": false, "deleteDocument": true, "shareDocument": false},
	"stranger": {"readDocument": false, "createDocument": false, "updateDocument": false, "deleteDocument": false, "shareDocument": false},
}

alone_mismatches contains [agent, tool, d] if {
	some agent, row in want_alone
	some tool, allowed in row
	d := decide(alone(agent, tool))
	d.allow != allowed
}

test_agent_alone_matrix if {
	count(want_alone) * count(tools) == 20
	alone_mismatches == set()
}

test_agent_alone_reasons if {
	decide(alone("summarizer", "updateDocument")) == {
		"allow": false,
		"reason": "agent_tool_not_allowed",
		"message": "agent \"summarizer\" may not call updateDocument",
		"http_status": 403,
	}
	decide(alone("stranger", "readDocument")).message == "agent \"stranger\" has no allow-list for server \"docs\""
	decide(alone("stranger", "readDocument")).reason == "agent_not_registered"
}

test_agent_alone_allow_list_is_per_server if {
	inp := json.patch(alone("summarizer", "readDocument"), [{"op": "replace", "path": "/server/id", "value": "wiki"}])
	decide(inp).reason == "agent_not_registered"
}

test_agent_alone_ignores_roles if {
	inp := json.patch(alone("summarizer", "createDocument"), [{"op": "replace", "path": "/principal/claims/roles", "value": ["admin"]}])
	decide(inp).reason == "agent_tool_not_allowed"
}

test_agent_alone_identified_by_client_id_without_subject if {
	inp := json.patch(alone("drafter", "createDocument"), [{"op": "replace", "path": "/principal/subject", "value": ""}])
	decide(inp).allow == true
}

# --- agent for a user: user's tools ∩ agent's tools, never destructive -------

# [agent, user roles, tool, reason]
for_user_cases := [
	["drafter", ["editor"], "updateDocument", "allowed"], # both allow
	["drafter", ["viewer"], "updateDocument", "role_not_allowed"], # agent may, user may not
	["summarizer", ["editor"], "updateDocument", "agent_tool_not_allowed"], # user may, agent may not
	["summarizer", ["viewer"], "readDocument", "allowed"],
	["janitor", ["admin"], "deleteDocument", "agent_destructive_tool"], # both allow, still destructive
	["drafter", ["admin"], "shareDocument", "human_required"],
	["stranger", ["admin"], "readDocument", "agent_not_registered"],
	["drafter", [], "readDocument", "role_not_allowed"],
	["drafter", ["root", 7], "readDocument", "role_not_allowed"],
]

for_user_mismatches contains [c, d.reason] if {
	some c in for_user_cases
	d := decide(for_user(c[0], c[1], c[2]))
	d.reason != c[3]
}

test_agent_for_user_table if {
	count(for_user_cases) == 9
	for_user_mismatches == set()
}

# Exhaustive: for every role, agent and tool, an allowed call is allowed by
# the user's role AND the agent's allow-list, and is not destructive.
never_more_than_user contains [role, agent, tool] if {
	some role, role_tools in data.mcpauthz.guardrails.roles
	some agent, agent_tools in data.mcpauthz.guardrails.agents.docs
	some tool in tools
	decide(for_user(agent, [role], tool)).allow
	not safe(tool, role_tools, agent_tools)
}

safe(tool, role_tools, agent_tools) if {
	tool in role_tools
	tool in agent_tools
	not tool in data.mcpauthz.guardrails.destructive_tools
}

allowed_for_user contains [role, agent, tool] if {
	some role, _ in data.mcpauthz.guardrails.roles
	some agent, _ in data.mcpauthz.guardrails.agents.docs
	some tool in tools
	decide(for_user(agent, [role], tool)).allow
}

test_agent_for_user_never_more_than_user if {
	never_more_than_user == set()

	# and the intersection is not empty: the guardrail does not just deny all
	allowed_for_user == {
		["viewer", "summarizer", "readDocument"], ["viewer", "drafter", "readDocument"], ["viewer", "janitor", "readDocument"],
		["editor", "summarizer", "readDocument"], ["editor", "drafter", "readDocument"], ["editor", "janitor", "readDocument"],
		["editor", "drafter", "createDocument"], ["editor", "drafter", "updateDocument"],
		["admin", "summarizer", "readDocument"], ["admin", "drafter", "readDocument"], ["admin", "janitor", "readDocument"],
		["admin", "drafter", "createDocument"], ["admin", "drafter", "updateDocument"],
	}
}

test_agent_for_user_messages if {
	decide(for_user("drafter", ["viewer"], "updateDocument")).message == "the user's roles (viewer) do not allow updateDocument"
	decide(for_user("drafter", [], "readDocument")).message == "the user has no role that may call readDocument"
	decide(for_user("janitor", ["admin"], "deleteDocument")).message == "an agent acting for a user may not call destructive tool deleteDocument"
}

test_agent_for_user_actor_client_id if {
	inp := json.patch(for_user("", ["editor"], "createDocument"), [{"op": "replace", "path": "/principal/actor/client_id", "value": "drafter"}])
	decide(inp).allow == true
}

# --- human present ------------------------------------------------------------

test_human_only_tool if {
	decide(human(["admin"], "shareDocument")).allow == true
	every inp in [alone("drafter", "shareDocument"), for_user("drafter", ["admin"], "shareDocument")] {
		d := decide(inp)
		d.reason == "human_required"
		d.message == "shareDocument requires a human present; agents may not call it"
	}
}

test_humans_by_role if {
	decide(human(["viewer"], "readDocument")).allow == true
	decide(human(["editor", "viewer"], "updateDocument")).allow == true
	decide(human(["admin"], "deleteDocument")).allow == true
	decide(human(["viewer"], "deleteDocument")).reason == "role_not_allowed"
	decide(human(["editor"], "deleteDocument")).message == "the user's roles (editor) do not allow deleteDocument"
}

# --- delegation chain depth ---------------------------------------------------

with_chain(n) := json.patch(for_user("summarizer", ["viewer"], "readDocument"), [{"op": "replace", "path": "/principal/chain", "value": [{"sub": sprintf("hop-%d", [i]), "client_id": "", "iss": ""} | some i in numbers.range(1, n)]}])

test_chain_depth if {
	decide(for_user("summarizer", ["viewer"], "readDocument")).allow == true
	decide(with_chain(1)).allow == true # actor + 1 prior = 2 = max_actors
	d := decide(with_chain(2))
	d.reason == "delegation_chain_too_deep"
	d.message == "3 actors in the delegation chain, at most 2 allowed"
}

test_chain_checked_before_tool_rules if {
	inp := json.patch(with_chain(5), [{"op": "replace", "path": "/mcp/tool", "value": "shareDocument"}])
	decide(inp).reason == "delegation_chain_too_deep"
}

test_null_chain_counts_actor_only if {
	inp := json.patch(for_user("summarizer", ["viewer"], "readDocument"), [{"op": "replace", "path": "/principal/chain", "value": null}])
	decide(inp).allow == true
}

# --- protocol -----------------------------------------------------------------

test_unknown_tool if {
	d := decide(human(["admin"], "formatDisk"))
	d.reason == "unknown_tool"
	d.message == "tool \"formatDisk\" is not known"
}

test_unknown_kind if {
	inp := json.patch(human(["admin"], "readDocument"), [{"op": "replace", "path": "/principal/kind", "value": "anonymous"}])
	decide(inp).reason == "unknown_principal_kind"
}

test_unauthenticated if {
	inp := json.patch(human(["admin"], "readDocument"), [{"op": "replace", "path": "/principal/authenticated", "value": false}])
	decide(inp) == {"allow": false, "reason": "unauthenticated", "message": "authentication is required", "http_status": 401}
	decide({"mcp": {"method": "ping"}}).reason == "unauthenticated"
}

message(inp, kind, method) := json.patch(inp, [
	{"op": "replace", "path": "/mcp/kind", "value": kind},
	{"op": "replace", "path": "/mcp/method", "value": method},
])

test_housekeeping_for_every_kind if {
	every inp in [human([], ""), alone("stranger", ""), for_user("stranger", [], "")] {
		every m in ["initialize", "tools/list", "logging/setLevel", "ping"] {
			decide(message(inp, "request", m)).reason == "housekeeping"
		}
		every m in ["notifications/initialized", "notifications/cancelled"] {
			decide(message(inp, "notification", m)).reason == "housekeeping"
		}
	}
	decide(json.patch(base, [{"op": "replace", "path": "/mcp/kind", "value": "stream"}, {"op": "replace", "path": "/mcp/method", "value": ""}])).allow == true
}

test_other_methods_denied if {
	d := decide(json.patch(base, [{"op": "replace", "path": "/mcp/method", "value": "resources/read"}]))
	d.reason == "method_not_allowed"
	d.message == "request \"resources/read\" is not allowed on this server"
}

# ============================================================================
# HOSTILE INPUTS: shapes an attacker tries (issue 15). Each must be refused.
# ============================================================================

# --- methods are matched exactly, together with the message kind -------------

test_hostile_notification_with_id if {
	every inp in [human(["admin"], ""), alone("drafter", "")] {
		d := decide(message(inp, "request", "notifications/initialized"))
		d.reason == "method_not_allowed"
		d.message == "\"notifications/initialized\" with an id is a request, not a notification"
	}
}

test_hostile_request_names_as_notifications if {
	every m in ["ping", "initialize", "tools/list"] {
		d := decide(message(human([], ""), "notification", m))
		d.reason == "method_not_allowed"
		d.message == sprintf("notification %q is not allowed on this server", [m])
	}

	# a tools/call without an id is not a tool call the guardrails allow
	d := decide(json.patch(human(["admin"], "shareDocument"), [{"op": "replace", "path": "/mcp/kind", "value": "notification"}]))
	d.reason == "method_not_allowed"
}

test_hostile_method_and_tool_spellings if {
	every m in ["Tools/list", "tools/list ", "notifications/initialized/../x", "ping\u0000"] {
		decide(message(human([], ""), "request", m)).reason == "method_not_allowed"
	}
	every t in ["ShareDocument", "shareDocument ", "ｓhareDocument", "share_document"] {
		decide(human(["admin"], t)).reason == "unknown_tool"
	}
}

# --- client JSON-RPC responses: only a person present may answer -------------

test_hostile_response_by_agent_alone if {
	every agent in ["summarizer", "janitor", "stranger"] {
		d := decide(message(alone(agent, ""), "response", ""))
		d == {
			"allow": false,
			"reason": "response_not_allowed",
			"message": "principal kind \"agent\" may not answer server requests (elicitation, sampling, roots): a person must be present",
			"http_status": 403,
		}
	}
	decide(message(human([], ""), "response", "")).reason == "housekeeping"
	decide(message(for_user("summarizer", [], ""), "response", "")).reason == "housekeeping"
}

# --- identities and claims compared exactly ----------------------------------

test_hostile_agent_name_variants if {
	every agent in ["Drafter", "drafter ", "ｄrafter"] {
		decide(for_user(agent, ["editor"], "updateDocument")).reason == "agent_not_registered"
		decide(alone(agent, "createDocument")).reason == "agent_not_registered"
	}
}

test_hostile_roles_claim_shapes if {
	every roles in [{"admin": "admin"}, "admin", [["admin"]], ["Admin"], null] {
		decide(human(roles, "deleteDocument")).reason == "role_not_allowed"
	}
}

# --- data with the wrong type fails closed, and refuses the bundle ------------

test_hostile_max_actors_as_string_fails_closed if {
	# "2" > 3 in Rego (strings sort after numbers): the old check never
	# tripped. Here a limit that is not a number refuses every tool call.
	every inp in [for_user("summarizer", ["viewer"], "readDocument"), with_chain(5), human(["viewer"], "readDocument")] {
		d := mcpauthz.decision with input as inp with data.mcpauthz.guardrails.max_actors as "2"
		d.reason == "delegation_chain_too_deep"
		d.message == "max_actors is not a number: every tool call is refused"
	}
}

test_shipped_data_is_well_formed if {
	mcpauthz.data_errors == set()
}

# [JSON patch of data.mcpauthz.guardrails, a problem data_errors must report]
data_error_cases := [
	[{"op": "add", "path": "/max_actors", "value": "2"}, "data.mcpauthz.guardrails.max_actors: want an integer >= 1, got string \"2\""],
	[{"op": "add", "path": "/max_actors", "value": 0}, "data.mcpauthz.guardrails.max_actors: want an integer >= 1, got number 0"],
	[{"op": "add", "path": "/max_actors", "value": 1.5}, "data.mcpauthz.guardrails.max_actors: want an integer >= 1, got number 1.5"],
	[{"op": "add", "path": "/human_only_tools", "value": "shareDocument"}, "data.mcpauthz.guardrails.human_only_tools: want a list of tool names, got string \"shareDocument\""],
	[{"op": "add", "path": "/human_only_tools", "value": ["sharedocument"]}, "data.mcpauthz.guardrails.human_only_tools[0]: tool \"sharedocument\" is not in tools"],
	[{"op": "add", "path": "/destructive_tools", "value": [{"name": "deleteDocument"}]}, "data.mcpauthz.guardrails.destructive_tools[0]: want an MCP tool name (1-128 of A-Z a-z 0-9 _ . -), got object"],
	[{"op": "add", "path": "/roles/viewer", "value": "readDocument"}, "data.mcpauthz.guardrails.roles.viewer: want a list of tool names, got string \"readDocument\""],
	[{"op": "add", "path": "/roles/viewer", "value": ["readDocument", "exportDocument"]}, "data.mcpauthz.guardrails.roles.viewer[1]: tool \"exportDocument\" is not in tools"],
	[{"op": "add", "path": "/agents/docs", "value": ["summarizer"]}, "data.mcpauthz.guardrails.agents.docs: want an object: agent id -> list of tool names, got array"],
	[{"op": "add", "path": "/agents/docs/summarizer", "value": "readDocument"}, "data.mcpauthz.guardrails.agents.docs.summarizer: want a list of tool names, got string \"readDocument\""],
	[{"op": "add", "path": "/agents/docs/summarizer", "value": ["read Document"]}, "data.mcpauthz.guardrails.agents.docs.summarizer[0]: want an MCP tool name (1-128 of A-Z a-z 0-9 _ . -), got string \"read Document\""],
	[{"op": "add", "path": "/tools", "value": {"readDocument": true}}, "data.mcpauthz.guardrails.tools: want a list of tool names, got object"],
	[{"op": "add", "path": "/roles", "value": ["viewer"]}, "data.mcpauthz.guardrails.roles: want an object: role -> list of tool names, got array"],
	[{"op": "add", "path": "/max_actor", "value": 2}, "data.mcpauthz.guardrails.max_actor is not a known key"],
	[{"op": "remove", "path": "/max_actors"}, "data.mcpauthz.guardrails.max_actors is missing: want an integer >= 1"],
	[{"op": "add", "path": "/protocol", "value": []}, "data.mcpauthz.guardrails.protocol: want an object with requests, notifications, transport_kinds and responders, got array"],
	[{"op": "add", "path": "/protocol/requests", "value": ["tools/call"]}, "data.mcpauthz.guardrails.protocol.requests[0]: want a request method other than tools/call and notifications/*, got string \"tools/call\""],
	[{"op": "add", "path": "/protocol/requests", "value": "ping"}, "data.mcpauthz.guardrails.protocol.requests: want a list of request methods, got string \"ping\""],
	[{"op": "add", "path": "/protocol/notifications", "value": ["ping"]}, "data.mcpauthz.guardrails.protocol.notifications[0]: want a notifications/* method, got string \"ping\""],
	[{"op": "add", "path": "/protocol/transport_kinds", "value": ["response"]}, "data.mcpauthz.guardrails.protocol.transport_kinds[0]: want stream or end_session, got string \"response\""],
	[{"op": "add", "path": "/protocol/responders", "value": ["agent_for_user", "anyone"]}, "data.mcpauthz.guardrails.protocol.responders[1]: want human, agent_for_user or agent, got string \"anyone\""],
	[{"op": "remove", "path": "/protocol/transport_kinds"}, "data.mcpauthz.guardrails.protocol.transport_kinds is missing: want a list of transport kinds (stream, end_session)"],
	[{"op": "add", "path": "/protocol/kinds", "value": []}, "data.mcpauthz.guardrails.protocol.kinds is not a known key"],
]

data_error_mismatches(cases) := {[c, errs] |
	some c in cases
	bad := json.patch(data.mcpauthz.guardrails, [c[0]])
	errs := mcpauthz.data_errors with data.mcpauthz.guardrails as bad
	not c[1] in errs
}

# Each data_errors evaluation runs every check: six cases per test keep
# each test well inside the test timeout, even traced for coverage.
test_data_error_cases if count(data_error_cases) == 23

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
	every bad in [null, [], "guardrails"] {
		errs := mcpauthz.data_errors with data.mcpauthz.guardrails as bad
		errs == {"data.mcpauthz.guardrails is missing or not an object (data.json nests it under mcpauthz.guardrails)"}
	}
}
