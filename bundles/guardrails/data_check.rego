# Load-time check of data.mcpauthz.guardrails.
#
# mcpauthz evaluates data_errors once when it loads a bundle revision and
# refuses the revision (the previous one keeps serving) when the set is not
# empty, so a wrong type cannot silently change what the policy means
# ("max_actors": "2" is a string, which would compare greater than every
# number and disable the depth limit). data_errors reads data only, never
# input, and is never part of a decision. Plain OPA does not run it: check it
# in CI with `opa eval -b bundles/guardrails data.mcpauthz.data_errors` (or
# `mcpauthz test`).
package mcpauthz

# Every key of data.mcpauthz.guardrails, with what it must hold.
gr_keys := {
	"tools": "a list of tool names",
	"roles": "an object: role -> list of tool names",
	"agents": "an object: server id -> agent id -> list of tool names",
	"destructive_tools": "a list of tool names",
	"human_only_tools": "a list of tool names",
	"max_actors": "an integer >= 1",
	"protocol": "an object with requests, notifications, transport_kinds and responders",
}

gr_protocol_keys := {
	"requests": "a list of request methods",
	"notifications": "a list of notifications/* methods",
	"transport_kinds": "a list of transport kinds (stream, end_session)",
	"responders": "a list of principal kinds (human, agent_for_user, agent)",
}

gr_kinds := {"human", "agent_for_user", "agent"}

data_errors contains "data.mcpauthz.guardrails is missing or not an object (data.json nests it under mcpauthz.guardrails)" if not is_object(cfg)

data_errors contains sprintf("data.mcpauthz.guardrails.%s is missing: want %s", [k, want]) if {
	is_object(cfg)
	some k, want in gr_keys
	not k in object.keys(cfg)
}

data_errors contains sprintf("data.mcpauthz.guardrails.protocol.%s is missing: want %s", [k, want]) if {
	is_object(cfg.protocol)
	some k, want in gr_protocol_keys
	not k in object.keys(cfg.protocol)
}

data_errors contains sprintf("data.mcpauthz.guardrails.%s is not a known key", [k]) if {
	is_object(cfg)
	some k, _ in cfg
	not gr_keys[k]
}

data_errors contains sprintf("data.mcpauthz.guardrails.protocol.%s is not a known key", [k]) if {
	is_object(cfg.protocol)
	some k, _ in cfg.protocol
	not gr_protocol_keys[k]
}

# --- types --------------------------------------------------------------------

data_errors contains gr_bad([k], gr_keys[k]) if {
	is_object(cfg)
	some k, v in cfg
	gr_keys[k]
	not gr_top_level_ok(k, v)
}

gr_top_level_ok(k, v) if {
	k in {"roles", "agents", "protocol"}
	is_object(v)
}

gr_top_level_ok(k, v) if {
	k in {"tools", "destructive_tools", "human_only_tools"}
	is_array(v)
}

gr_top_level_ok("max_actors", v) if {
	is_number(v)
	v == floor(v)
	v >= 1
}

data_errors contains gr_bad(["roles", r], "a list of tool names") if {
	is_object(cfg.roles)
	some r, tools in cfg.roles
	not is_array(tools)
}

data_errors contains gr_bad(["agents", s], "an object: agent id -> list of tool names") if {
	is_object(cfg.agents)
	some s, agents in cfg.agents
	not is_object(agents)
}

data_errors contains gr_bad(["agents", s, a], "a list of tool names") if {
	is_object(cfg.agents)
	some s, agents in cfg.agents
	is_object(agents)
	some a, tools in agents
	not is_array(tools)
}

# Every place the data names a tool.
gr_tool_paths contains [k, i] if {
	some k in ["tools", "destructive_tools", "human_only_tools"]
	is_array(cfg[k])
	some i, _ in cfg[k]
}

gr_tool_paths contains ["roles", r, i] if {
	is_object(cfg.roles)
	some r, tools in cfg.roles
	is_array(tools)
	some i, _ in tools
}

gr_tool_paths contains ["agents", s, a, i] if {
	is_object(cfg.agents)
	some s, agents in cfg.agents
	is_object(agents)
	some a, tools in agents
	is_array(tools)
	some i, _ in tools
}

data_errors contains gr_bad(path, "an MCP tool name (1-128 of A-Z a-z 0-9 _ . -)") if {
	some path in gr_tool_paths
	not gr_tool_name(object.get(cfg, path, null))
}

# A tool named anywhere but in `tools` silently does nothing (a typo in
# human_only_tools would let agents call the tool).
data_errors contains sprintf("data.mcpauthz.guardrails.%s: tool %q is not in tools", [gr_path(path), t]) if {
	is_array(cfg.tools)
	some path in gr_tool_paths
	path[0] != "tools"
	t := object.get(cfg, path, null)
	gr_tool_name(t)
	not t in cfg.tools
}

data_errors contains gr_bad(["protocol", k], gr_protocol_keys[k]) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	gr_protocol_keys[k]
	not is_array(v)
}

data_errors contains gr_bad(["protocol", k, i], want) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	is_array(v)
	some i, x in v
	not gr_protocol_value(k, x)
	want := gr_protocol_element[k]
}

gr_protocol_element := {
	"requests": "a request method other than tools/call and notifications/*",
	"notifications": "a notifications/* method",
	"transport_kinds": "stream or end_session",
	"responders": "human, agent_for_user or agent",
}

# tools/call is decided by the guardrails; listing it (or a notification)
# as a housekeeping request would bypass them.
gr_protocol_value("requests", m) if {
	is_string(m)
	m != ""
	m != "tools/call"
	not startswith(m, "notifications/")
}

gr_protocol_value("notifications", m) if {
	is_string(m)
	startswith(m, "notifications/")
	m != "notifications/"
}

gr_protocol_value("transport_kinds", k) if k in {"stream", "end_session"}

gr_protocol_value("responders", k) if k in gr_kinds

# --- helpers --------------------------------------------------------------------

gr_tool_name(t) if {
	is_string(t)
	regex.match(`^[A-Za-z0-9_.-]{1,128}$`, t)
}

gr_bad(path, want) := sprintf("data.mcpauthz.guardrails.%s: want %s, got %s", [gr_path(path), want, gr_got(object.get(cfg, path, null))])

# agents.docs.summarizer[0]
gr_path(path) := concat("", [s |
	some i, e in path
	s := gr_path_segment(i, e)
])

gr_path_segment(_, e) := sprintf("[%d]", [e]) if is_number(e)

gr_path_segment(0, e) := e if is_string(e)

gr_path_segment(i, e) := concat("", [".", e]) if {
	i > 0
	is_string(e)
}

# A value's type, and the value itself when it is a scalar.
gr_got(v) := type_name(v) if {
	is_object(v)
} else := type_name(v) if {
	is_array(v)
} else := sprintf("%s %s", [type_name(v), json.marshal(v)])
