# Load-time check of data.mcpauthz.rbac.
#
# mcpauthz evaluates data_errors once when it loads a bundle revision and
# refuses the revision (the previous one keeps serving) when the set is not
# empty, so a wrong type cannot silently change what the policy means: a
# misspelt key, a string where a list belongs, a role naming a tool that
# does not exist. data_errors reads data only, never input, and is never
# part of a decision. Plain OPA does not run it: check it in CI with
# `opa eval -b bundles/rbac data.mcpauthz.data_errors` (or `mcpauthz test`).
package mcpauthz

# Every key of data.mcpauthz.rbac, with what it must hold.
rbac_keys := {
	"roles": "an object: role -> list of tool names",
	"tool_scopes": "an object: tool name -> one OAuth scope",
	"destructive_tools": "a list of tool names",
	"agents_allowed_tools": "a list of tool names",
	"protocol": "an object with requests, notifications, transport_kinds and responders",
}

rbac_protocol_keys := {
	"requests": "a list of request methods",
	"notifications": "a list of notifications/* methods",
	"transport_kinds": "a list of transport kinds (stream, end_session)",
	"responders": "a list of principal kinds (human, agent_for_user, agent)",
}

data_errors contains "data.mcpauthz.rbac is missing or not an object (data.json nests it under mcpauthz.rbac)" if not is_object(cfg)

data_errors contains sprintf("data.mcpauthz.rbac.%s is missing: want %s", [k, want]) if {
	is_object(cfg)
	some k, want in rbac_keys
	not k in object.keys(cfg)
}

data_errors contains sprintf("data.mcpauthz.rbac.protocol.%s is missing: want %s", [k, want]) if {
	is_object(cfg.protocol)
	some k, want in rbac_protocol_keys
	not k in object.keys(cfg.protocol)
}

# Unknown keys are refused: a misspelt "destructive_tool" would otherwise
# leave destructive_tools missing without a word.
data_errors contains sprintf("data.mcpauthz.rbac.%s is not a known key", [k]) if {
	is_object(cfg)
	some k, _ in cfg
	not rbac_keys[k]
}

data_errors contains sprintf("data.mcpauthz.rbac.protocol.%s is not a known key", [k]) if {
	is_object(cfg.protocol)
	some k, _ in cfg.protocol
	not rbac_protocol_keys[k]
}

# --- types --------------------------------------------------------------------

data_errors contains rbac_bad([k], rbac_keys[k]) if {
	is_object(cfg)
	some k in ["roles", "tool_scopes", "protocol"]
	k in object.keys(cfg)
	not is_object(cfg[k])
}

data_errors contains rbac_bad([k], rbac_keys[k]) if {
	is_object(cfg)
	some k in ["destructive_tools", "agents_allowed_tools"]
	k in object.keys(cfg)
	not is_array(cfg[k])
}

data_errors contains rbac_bad(["roles", r], "a list of tool names") if {
	is_object(cfg.roles)
	some r, tools in cfg.roles
	not is_array(tools)
}

data_errors contains rbac_bad(path, "an MCP tool name (1-128 of A-Z a-z 0-9 _ . -)") if {
	some path in rbac_tool_paths
	not rbac_tool_name(object.get(cfg, path, null))
}

rbac_tool_paths contains ["roles", r, i] if {
	is_object(cfg.roles)
	some r, tools in cfg.roles
	is_array(tools)
	some i, _ in tools
}

rbac_tool_paths contains [k, i] if {
	some k in ["destructive_tools", "agents_allowed_tools"]
	is_array(cfg[k])
	some i, _ in cfg[k]
}

data_errors contains sprintf("data.mcpauthz.rbac.tool_scopes: %q is not an MCP tool name", [t]) if {
	is_object(cfg.tool_scopes)
	some t, _ in cfg.tool_scopes
	not rbac_tool_name(t)
}

data_errors contains rbac_bad(["tool_scopes", t], "one OAuth scope (RFC 6749 scope-token: no spaces)") if {
	is_object(cfg.tool_scopes)
	some t, s in cfg.tool_scopes
	not rbac_scope_token(s)
}

data_errors contains rbac_bad(["protocol", k], rbac_protocol_keys[k]) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	rbac_protocol_keys[k]
	not is_array(v)
}

data_errors contains rbac_bad(["protocol", k, i], want) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	is_array(v)
	some i, x in v
	not rbac_protocol_value(k, x)
	want := rbac_protocol_element[k]
}

rbac_protocol_element := {
	"requests": "a request method other than tools/call and notifications/*",
	"notifications": "a notifications/* method",
	"transport_kinds": "stream or end_session",
	"responders": "human, agent_for_user or agent",
}

# tools/call is decided by the tool rules; listing it (or a notification)
# as a housekeeping request would bypass them.
rbac_protocol_value("requests", m) if {
	is_string(m)
	m != ""
	m != "tools/call"
	not startswith(m, "notifications/")
}

rbac_protocol_value("notifications", m) if {
	is_string(m)
	startswith(m, "notifications/")
	m != "notifications/"
}

rbac_protocol_value("transport_kinds", k) if k in {"stream", "end_session"}

rbac_protocol_value("responders", k) if k in known_kinds

# --- references -----------------------------------------------------------------

# Every tool the data names must have a scope, or the entry silently does
# nothing (a typo in destructive_tools would let agents acting for users
# call the tool).
data_errors contains sprintf("data.mcpauthz.rbac.%s: tool %q is not in tool_scopes", [rbac_path(path), t]) if {
	is_object(cfg.tool_scopes)
	some path in rbac_tool_paths
	t := object.get(cfg, path, null)
	rbac_tool_name(t)
	not t in object.keys(cfg.tool_scopes)
}

# --- helpers --------------------------------------------------------------------

rbac_tool_name(t) if {
	is_string(t)
	regex.match(`^[A-Za-z0-9_.-]{1,128}$`, t)
}

# RFC 6749 scope-token: printable ASCII except space, " and \.
rbac_scope_token(s) if {
	is_string(s)
	regex.match(`^[\x21\x23-\x5B\x5D-\x7E]+$`, s)
}

rbac_bad(path, want) := sprintf("data.mcpauthz.rbac.%s: want %s, got %s", [rbac_path(path), want, rbac_got(object.get(cfg, path, null))])

# roles.viewer[0]
rbac_path(path) := concat("", [s |
	some i, e in path
	s := rbac_path_segment(i, e)
])

rbac_path_segment(_, e) := sprintf("[%d]", [e]) if is_number(e)

rbac_path_segment(0, e) := e if is_string(e)

rbac_path_segment(i, e) := concat("", [".", e]) if {
	i > 0
	is_string(e)
}

# A value's type, and the value itself when it is a scalar.
rbac_got(v) := type_name(v) if {
	is_object(v)
} else := type_name(v) if {
	is_array(v)
} else := sprintf("%s %s", [type_name(v), json.marshal(v)])
