# Guardrails for AI agents in front of a document MCP server.
#
#   - an agent alone (kind agent) may call only the tools listed for it, per
#     server, in data.mcpauthz.guardrails.agents[server][agent];
#   - an agent acting for a user (kind agent_for_user) never gets more than
#     the user: the user's role-derived tools intersected with the agent's
#     allow-list, and never a destructive tool;
#   - some tools need a human present in person (kind human only);
#   - delegation chains (nested `act` claims) are limited in depth.
#
# Messages are matched exactly: a method counts only with the message kind it
# is defined for (a "notification" that carries an id is a request), and a
# JSON-RPC response (an answer to the server's elicitation, sampling or
# roots request) only from a person present.
#
# Input: mcpauthz.input/v1. Output: data.mcpauthz.decision
# (mcpauthz.decision/v1). All facts live in data.mcpauthz.guardrails;
# data_check.rego refuses the bundle when they are not well-formed.
package mcpauthz

cfg := data.mcpauthz.guardrails

tool := input.mcp.tool

# --- the decision -----------------------------------------------------------

decision := gr_deny("unauthenticated", "authentication is required", 401) if {
	not gr_authenticated
} else := gr_allow("housekeeping") if {
	gr_housekeeping
} else := gr_deny("response_not_allowed", gr_response_message, 403) if {
	input.mcp.kind == "response"
} else := gr_tool_decision if {
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
} else := gr_deny("method_not_allowed", gr_method_message, 403)

gr_authenticated if input.principal.authenticated == true

# --- protocol housekeeping --------------------------------------------------

gr_housekeeping if {
	input.mcp.kind == "request"
	input.mcp.method in cfg.protocol.requests
}

gr_housekeeping if {
	input.mcp.kind == "notification"
	input.mcp.method in cfg.protocol.notifications
}

gr_housekeeping if input.mcp.kind in cfg.protocol.transport_kinds

# The input does not say which server request a response answers, so the
# kinds in protocol.responders (a person present) may answer all of them
# and nobody else any: an agent alone must not accept an elicitation.
gr_housekeeping if {
	input.mcp.kind == "response"
	input.principal.kind in cfg.protocol.responders
}

gr_response_message := sprintf("principal kind %q may not answer server requests (elicitation, sampling, roots): a person must be present", [input.principal.kind])

gr_method_message := sprintf("%q with an id is a request, not a notification", [input.mcp.method]) if {
	input.mcp.kind == "request"
	startswith(input.mcp.method, "notifications/")
} else := sprintf("%s %q is not allowed on this server", [input.mcp.kind, input.mcp.method])

# --- tools/call -------------------------------------------------------------

# Rule order is the order of this chain: the first guardrail that trips
# gives the reason.
gr_tool_decision := gr_deny("unknown_tool", sprintf("tool %q is not known", [tool]), 403) if {
	not tool in cfg.tools
} else := gr_deny("unknown_principal_kind", sprintf("principal kind %q may not call tools", [input.principal.kind]), 403) if {
	not input.principal.kind in {"human", "agent_for_user", "agent"}
} else := gr_deny("delegation_chain_too_deep", gr_chain_message, 403) if {
	not gr_chain_within_limit
} else := gr_deny("human_required", sprintf("%s requires a human present; agents may not call it", [tool]), 403) if {
	tool in cfg.human_only_tools
	input.principal.kind != "human"
} else := gr_deny("agent_destructive_tool", sprintf("an agent acting for a user may not call destructive tool %s", [tool]), 403) if {
	input.principal.kind == "agent_for_user"
	tool in cfg.destructive_tools
} else := gr_deny("agent_not_registered", sprintf("agent %q has no allow-list for server %q", [agent_id, input.server.id]), 403) if {
	input.principal.kind != "human"
	not agent_tools
} else := gr_deny("agent_tool_not_allowed", sprintf("agent %q may not call %s", [agent_id, tool]), 403) if {
	input.principal.kind != "human"
	not tool in agent_tools
} else := gr_deny("role_not_allowed", role_message, 403) if {
	input.principal.kind != "agent"
	not tool in user_tools
} else := gr_allow("allowed")

# The agent is the current actor when acting for a user, the subject
# (falling back to the client id) when acting alone.
agent_id := input.principal.actor.sub if {
	input.principal.kind == "agent_for_user"
	input.principal.actor.sub != ""
} else := input.principal.actor.client_id if {
	input.principal.kind == "agent_for_user"
} else := input.principal.subject if {
	input.principal.subject != ""
} else := input.principal.client_id

agent_tools := cfg.agents[input.server.id][agent_id]

# Fail closed: a max_actors that is not a number refuses every tool call.
gr_chain_within_limit if {
	is_number(cfg.max_actors)
	actor_count <= cfg.max_actors
}

gr_chain_message := sprintf("%d actors in the delegation chain, at most %d allowed", [actor_count, cfg.max_actors]) if {
	is_number(cfg.max_actors)
} else := "max_actors is not a number: every tool call is refused"

# The current actor plus every prior actor of nested `act` claims.
actor_count := 1 + count(prior_actors) if {
	is_object(input.principal.actor)
} else := 0

prior_actors := input.principal.chain if {
	is_array(input.principal.chain)
} else := []

# Roles come from the token's `roles` claim, which must be an array (an
# object's values are not roles); non-strings in it are ignored.
roles := [r | is_array(input.principal.claims.roles); some r in input.principal.claims.roles; is_string(r)]

user_tools contains t if {
	some r in roles
	some t in cfg.roles[r]
}

role_message := sprintf("the user has no role that may call %s", [tool]) if {
	count(roles) == 0
} else := sprintf("the user's roles (%s) do not allow %s", [concat(", ", roles), tool])

gr_allow(reason) := {"allow": true, "reason": reason, "http_status": 200}

gr_deny(reason, message, status) := {
	"allow": false,
	"reason": reason,
	"message": message,
	"http_status": status,
}
