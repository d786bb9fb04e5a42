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

test_housekeeping_for_every_kind if {
	every inp in [human([], ""), alone("stranger", ""), for_user("stranger", [], "")] {
		every m in ["initialize", "tools/list", "notifications/initialized"] {
			decide(json.patch(inp, [{"op": "replace", "path": "/mcp/method", "value": m}])).reason == "housekeeping"
		}
	}
	decide(json.patch(base, [{"op": "replace", "path": "/mcp/kind", "value": "stream"}, {"op": "replace", "path": "/mcp/method", "value": ""}])).allow == true
}

test_other_methods_denied if {
	d := decide(json.patch(base, [{"op": "replace", "path": "/mcp/method", "value": "resources/read"}]))
	d.reason == "method_not_allowed"
}
