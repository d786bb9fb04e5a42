# Load-time check of data.mcpauthz.scopes.
#
# mcpauthz evaluates data_errors once when it loads a bundle revision and
# refuses the revision (the previous one keeps serving) when the set is not
# empty, so a wrong type cannot silently change what the policy means (a
# required scope written as a string instead of a list would require
# nothing). data_errors reads data only, never input, and is never part of a
# decision. Plain OPA does not run it: check it in CI with
# `opa eval -b bundles/scopes data.mcpauthz.data_errors` (or `mcpauthz test`).
package mcpauthz

# Every key of data.mcpauthz.scopes, with what it must hold.
sc_keys := {
	"servers": "an object: server id -> {tools, methods, downstream, mtls_tools}",
	"credentials": "an object: principal kind -> credential mode",
	"protocol": "an object with requests, notifications, transport_kinds and responders",
}

# Keys of servers.<id>; only tools is required.
sc_server_keys := {
	"tools": "an object: tool name -> list of OAuth scopes",
	"methods": "an object: method -> list of OAuth scopes",
	"downstream": "an object: tool name -> list of upstream scopes",
	"mtls_tools": "a list of tool names",
}

sc_protocol_keys := {
	"requests": "a list of request methods",
	"notifications": "a list of notifications/* methods",
	"transport_kinds": "a list of transport kinds (stream, end_session)",
	"responders": "a list of principal kinds (human, agent_for_user, agent)",
}

sc_kinds := {"human", "agent_for_user", "agent"}

sc_credential_modes := {"public", "static", "service_account", "delegated", "individual"}

data_errors contains "data.mcpauthz.scopes is missing or not an object (data.json nests it under mcpauthz.scopes)" if not is_object(cfg)

data_errors contains sprintf("data.mcpauthz.scopes.%s is missing: want %s", [k, want]) if {
	is_object(cfg)
	some k, want in sc_keys
	not k in object.keys(cfg)
}

data_errors contains sprintf("data.mcpauthz.scopes.servers.%s.tools is missing: want %s", [id, sc_server_keys.tools]) if {
	some id, server in sc_servers
	not "tools" in object.keys(server)
}

data_errors contains sprintf("data.mcpauthz.scopes.protocol.%s is missing: want %s", [k, want]) if {
	is_object(cfg.protocol)
	some k, want in sc_protocol_keys
	not k in object.keys(cfg.protocol)
}

data_errors contains sprintf("data.mcpauthz.scopes.%s is not a known key", [k]) if {
	is_object(cfg)
	some k, _ in cfg
	not sc_keys[k]
}

data_errors contains sprintf("data.mcpauthz.scopes.servers.%s.%s is not a known key", [id, k]) if {
	some id, server in sc_servers
	some k, _ in server
	not sc_server_keys[k]
}

data_errors contains sprintf("data.mcpauthz.scopes.protocol.%s is not a known key", [k]) if {
	is_object(cfg.protocol)
	some k, _ in cfg.protocol
	not sc_protocol_keys[k]
}

# --- types --------------------------------------------------------------------

data_errors contains sc_bad([k], sc_keys[k]) if {
	is_object(cfg)
	some k, v in cfg
	sc_keys[k]
	not is_object(v)
}

# Every server whose entry is an object.
sc_servers[id] := server if {
	is_object(cfg.servers)
	some id, server in cfg.servers
	is_object(server)
}

data_errors contains sc_bad(["servers", id], "an object {tools, methods, downstream, mtls_tools}") if {
	is_object(cfg.servers)
	some id, server in cfg.servers
	not is_object(server)
}

data_errors contains sc_bad(["servers", id, k], sc_server_keys[k]) if {
	some id, server in sc_servers
	some k in ["tools", "methods", "downstream"]
	k in object.keys(server)
	not is_object(server[k])
}

data_errors contains sc_bad(["servers", id, "mtls_tools"], sc_server_keys.mtls_tools) if {
	some id, server in sc_servers
	"mtls_tools" in object.keys(server)
	not is_array(server.mtls_tools)
}

# tools, methods, downstream: name -> list of scopes.
data_errors contains sc_bad(["servers", id, k, name], "a list of OAuth scopes") if {
	some id, server in sc_servers
	some k in ["tools", "methods", "downstream"]
	is_object(server[k])
	some name, scopes in server[k]
	not is_array(scopes)
}

data_errors contains sc_bad(["servers", id, k, name, i], "an OAuth scope (RFC 6749 scope-token: no spaces)") if {
	some id, server in sc_servers
	some k in ["tools", "methods", "downstream"]
	is_object(server[k])
	some name, scopes in server[k]
	is_array(scopes)
	some i, s in scopes
	not sc_scope_token(s)
}

data_errors contains sprintf("data.mcpauthz.scopes.servers.%s.tools: %q is not an MCP tool name", [id, t]) if {
	some id, server in sc_servers
	is_object(server.tools)
	some t, _ in server.tools
	not sc_tool_name(t)
}

# tools/call is decided by `tools`, notifications are never requests.
data_errors contains sprintf("data.mcpauthz.scopes.servers.%s.methods: %q is not a request method that needs scopes", [id, m]) if {
	some id, server in sc_servers
	is_object(server.methods)
	some m, _ in server.methods
	not sc_scoped_method(m)
}

# downstream and mtls_tools name tools of the same server.
data_errors contains sprintf("data.mcpauthz.scopes.servers.%s.downstream: tool %q is not in tools", [id, t]) if {
	some id, server in sc_servers
	is_object(server.downstream)
	is_object(server.tools)
	some t, _ in server.downstream
	not t in object.keys(server.tools)
}

data_errors contains sprintf("data.mcpauthz.scopes.servers.%s.mtls_tools[%d]: %s", [id, i, sc_mtls_problem(server, t)]) if {
	some id, server in sc_servers
	is_array(server.mtls_tools)
	some i, t in server.mtls_tools
	sc_mtls_problem(server, t)
}

sc_mtls_problem(server, t) := sprintf("want an MCP tool name, got %s", [sc_got(t)]) if {
	not sc_tool_name(t)
} else := sprintf("tool %q is not in tools", [t]) if {
	not sc_has_tool(server, t)
}

sc_has_tool(server, t) if {
	is_object(server.tools)
	t in object.keys(server.tools)
}

data_errors contains sc_bad(["credentials", kind], "one of delegated, individual, public, service_account, static") if {
	is_object(cfg.credentials)
	some kind, mode in cfg.credentials
	not mode in sc_credential_modes
}

data_errors contains sprintf("data.mcpauthz.scopes.credentials: %q is not a principal kind (human, agent_for_user, agent)", [kind]) if {
	is_object(cfg.credentials)
	some kind, _ in cfg.credentials
	not kind in sc_kinds
}

# --- protocol -------------------------------------------------------------------

data_errors contains sc_bad(["protocol", k], sc_protocol_keys[k]) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	sc_protocol_keys[k]
	not is_array(v)
}

data_errors contains sc_bad(["protocol", k, i], want) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	is_array(v)
	some i, x in v
	not sc_protocol_value(k, x)
	want := sc_protocol_element[k]
}

sc_protocol_element := {
	"requests": "a request method other than tools/call, completion/complete and notifications/*",
	"notifications": "a notifications/* method",
	"transport_kinds": "stream or end_session",
	"responders": "human, agent_for_user or agent",
}

# Methods the policy decides by scopes must not be listed as housekeeping.
sc_protocol_value("requests", m) if {
	sc_scoped_method(m)
	m != "completion/complete"
}

sc_protocol_value("notifications", m) if {
	is_string(m)
	startswith(m, "notifications/")
	m != "notifications/"
}

sc_protocol_value("transport_kinds", k) if k in {"stream", "end_session"}

sc_protocol_value("responders", k) if k in sc_kinds

# --- helpers --------------------------------------------------------------------

sc_scoped_method(m) if {
	is_string(m)
	m != ""
	m != "tools/call"
	not startswith(m, "notifications/")
}

sc_tool_name(t) if {
	is_string(t)
	regex.match(`^[A-Za-z0-9_.-]{1,128}$`, t)
}

# RFC 6749 scope-token: printable ASCII except space, " and \.
sc_scope_token(s) if {
	is_string(s)
	regex.match(`^[\x21\x23-\x5B\x5D-\x7E]+$`, s)
}

sc_bad(path, want) := sprintf("data.mcpauthz.scopes.%s: want %s, got %s", [sc_path(path), want, sc_got(object.get(cfg, path, null))])

# servers.docs.tools.readDocument[0]
sc_path(path) := concat("", [s |
	some i, e in path
	s := sc_path_segment(i, e)
])

sc_path_segment(_, e) := sprintf("[%d]", [e]) if is_number(e)

sc_path_segment(0, e) := e if is_string(e)

sc_path_segment(i, e) := concat("", [".", e]) if {
	i > 0
	is_string(e)
}

# A value's type, and the value itself when it is a scalar.
sc_got(v) := type_name(v) if {
	is_object(v)
} else := type_name(v) if {
	is_array(v)
} else := sprintf("%s %s", [type_name(v), json.marshal(v)])
