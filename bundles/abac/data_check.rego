# Load-time check of data.mcpauthz.abac.
#
# mcpauthz evaluates data_errors once when it loads a bundle revision and
# refuses the revision (the previous one keeps serving) when the set is not
# empty, so a wrong type cannot silently change what the policy means
# ("read_only": "false" is a string, not false). data_errors reads data
# only, never input, and is never part of a decision. Plain OPA does not run
# it: check it in CI with `opa eval -b bundles/abac data.mcpauthz.data_errors`
# (or `mcpauthz test`).
package mcpauthz

# Every key of data.mcpauthz.abac, with what it must hold.
abac_keys := {
	"tools": "an object: tool name -> {read_only, args}",
	"documents": "an object: document id -> {org}",
	"resource_prefix": "a URI scheme and \"://\", e.g. \"docs://\"",
	"resource_methods": "a list of resources/read, resources/subscribe, resources/unsubscribe",
	"writers": "a list of the principal kinds that may call tools that are not read-only",
	"protocol": "an object with requests, notifications, transport_kinds and responders",
}

abac_protocol_keys := {
	"requests": "a list of request methods",
	"notifications": "a list of notifications/* methods",
	"transport_kinds": "a list of transport kinds (stream, end_session)",
	"responders": "a list of principal kinds (human, agent_for_user, agent)",
}

abac_kinds := {"human", "agent_for_user", "agent"}

data_errors contains "data.mcpauthz.abac is missing or not an object (data.json nests it under mcpauthz.abac)" if not is_object(cfg)

data_errors contains sprintf("data.mcpauthz.abac.%s is missing: want %s", [k, want]) if {
	is_object(cfg)
	some k, want in abac_keys
	not k in object.keys(cfg)
}

data_errors contains sprintf("data.mcpauthz.abac.protocol.%s is missing: want %s", [k, want]) if {
	is_object(cfg.protocol)
	some k, want in abac_protocol_keys
	not k in object.keys(cfg.protocol)
}

data_errors contains sprintf("data.mcpauthz.abac.%s is not a known key", [k]) if {
	is_object(cfg)
	some k, _ in cfg
	not abac_keys[k]
}

data_errors contains sprintf("data.mcpauthz.abac.protocol.%s is not a known key", [k]) if {
	is_object(cfg.protocol)
	some k, _ in cfg.protocol
	not abac_protocol_keys[k]
}

# --- top-level types ------------------------------------------------------------

data_errors contains abac_bad([k], abac_keys[k]) if {
	is_object(cfg)
	some k, v in cfg
	abac_keys[k]
	not abac_top_level_ok(k, v)
}

abac_top_level_ok(k, v) if {
	k in {"tools", "documents", "protocol"}
	is_object(v)
}

abac_top_level_ok(k, v) if {
	k in {"resource_methods", "writers"}
	is_array(v)
}

abac_top_level_ok("resource_prefix", v) if {
	is_string(v)
	regex.match(`^[a-z][a-z0-9+.-]*://$`, v)
}

data_errors contains abac_bad(["resource_methods", i], "resources/read, resources/subscribe or resources/unsubscribe") if {
	is_array(cfg.resource_methods)
	some i, m in cfg.resource_methods
	not m in {"resources/read", "resources/subscribe", "resources/unsubscribe"}
}

data_errors contains abac_bad(["writers", i], "human, agent_for_user or agent") if {
	is_array(cfg.writers)
	some i, k in cfg.writers
	not k in abac_kinds
}

# --- tools ----------------------------------------------------------------------

data_errors contains sprintf("data.mcpauthz.abac.tools: %q is not an MCP tool name", [t]) if {
	is_object(cfg.tools)
	some t, _ in cfg.tools
	not abac_matches(`^[A-Za-z0-9_.-]{1,128}$`, t)
}

data_errors contains abac_bad(["tools", t], "an object with read_only and args") if {
	is_object(cfg.tools)
	some t, spec in cfg.tools
	not is_object(spec)
}

data_errors contains sprintf("data.mcpauthz.abac.tools.%s.%s is missing", [t, k]) if {
	is_object(cfg.tools)
	some t, spec in cfg.tools
	is_object(spec)
	some k in ["read_only", "args"]
	not k in object.keys(spec)
}

data_errors contains sprintf("data.mcpauthz.abac.tools.%s.%s is not a known key", [t, k]) if {
	is_object(cfg.tools)
	some t, spec in cfg.tools
	is_object(spec)
	some k, _ in spec
	not k in {"read_only", "args"}
}

data_errors contains abac_bad(["tools", t, "read_only"], "a boolean") if {
	is_object(cfg.tools)
	some t, spec in cfg.tools
	is_object(spec)
	"read_only" in object.keys(spec)
	not is_boolean(spec.read_only)
}

data_errors contains abac_bad(["tools", t, "args"], "an object: argument name -> {type, optional}") if {
	is_object(cfg.tools)
	some t, spec in cfg.tools
	is_object(spec)
	"args" in object.keys(spec)
	not is_object(spec.args)
}

# Every declared argument of every tool: [tool, flat name, declaration].
abac_arg_specs contains [t, name, arg] if {
	is_object(cfg.tools)
	some t, spec in cfg.tools
	is_object(spec.args)
	some name, arg in spec.args
}

# "id", "options.baseline", "documents[]", "rows[].cells[]".
data_errors contains sprintf("data.mcpauthz.abac.tools.%s.args: %q is not an argument name (names of A-Z a-z 0-9 _ -, joined by \".\" or followed by \"[]\")", [t, name]) if {
	some [t, name, _] in abac_arg_specs
	not abac_matches(`^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}|\[\])*$`, name)
}

data_errors contains abac_bad(["tools", t, "args", name], "an object {type, optional}") if {
	some [t, name, arg] in abac_arg_specs
	not is_object(arg)
}

data_errors contains abac_bad(["tools", t, "args", name, "type"], "one of array, boolean, document_id, number, object, string") if {
	some [t, name, arg] in abac_arg_specs
	is_object(arg)
	not arg.type in object.keys(abac_type_description)
}

data_errors contains abac_bad(["tools", t, "args", name, "optional"], "a boolean") if {
	some [t, name, arg] in abac_arg_specs
	is_object(arg)
	"optional" in object.keys(arg)
	not is_boolean(arg.optional)
}

data_errors contains sprintf("data.mcpauthz.abac.tools.%s.args.%s.%s is not a known key", [t, name, k]) if {
	some [t, name, arg] in abac_arg_specs
	is_object(arg)
	some k, _ in arg
	not k in {"type", "optional"}
}

# "options.baseline" needs "options" of type object; "documents[]" needs
# "documents" of type array.
data_errors contains sprintf("data.mcpauthz.abac.tools.%s.args.%s: %q must be declared with type %s", [t, name, parent, want]) if {
	some [t, name, _] in abac_arg_specs
	[[_, parent, last]] := regex.find_all_string_submatch_n(`^(.+?)(\.[^.\[\]]+|\[\])$`, name, 1)
	want := abac_parent_type(last)
	not cfg.tools[t].args[parent].type == want
}

abac_parent_type("[]") := "array"

abac_parent_type(last) := "object" if last != "[]"

# An array without a declaration for its elements accepts only [].
data_errors contains sprintf("data.mcpauthz.abac.tools.%s.args.%s: an array needs its elements declared as %q", [t, name, concat("", [name, "[]"])]) if {
	some [t, name, arg] in abac_arg_specs
	arg.type == "array"
	not cfg.tools[t].args[concat("", [name, "[]"])]
}

# --- documents ------------------------------------------------------------------

data_errors contains sprintf("data.mcpauthz.abac.documents: %q is not a document id (a letter or digit then up to 63 of A-Z a-z 0-9 _ -)", [id]) if {
	is_object(cfg.documents)
	some id, _ in cfg.documents
	not abac_matches(abac_id_grammar, id)
}

data_errors contains abac_bad(["documents", id], "an object {\"org\": <organization>}") if {
	is_object(cfg.documents)
	some id, doc in cfg.documents
	not abac_document_ok(doc)
}

abac_document_ok(doc) if {
	is_object(doc)
	object.keys(doc) == {"org"}
	abac_matches(abac_id_grammar, doc.org)
}

# --- protocol -------------------------------------------------------------------

data_errors contains abac_bad(["protocol", k], abac_protocol_keys[k]) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	abac_protocol_keys[k]
	not is_array(v)
}

data_errors contains abac_bad(["protocol", k, i], want) if {
	is_object(cfg.protocol)
	some k, v in cfg.protocol
	is_array(v)
	some i, x in v
	not abac_protocol_value(k, x)
	want := abac_protocol_element[k]
}

abac_protocol_element := {
	"requests": "a request method other than tools/call, resources/read|subscribe|unsubscribe and notifications/*",
	"notifications": "a notifications/* method",
	"transport_kinds": "stream or end_session",
	"responders": "human, agent_for_user or agent",
}

# Methods the policy decides itself must not be listed as housekeeping.
abac_protocol_value("requests", m) if {
	is_string(m)
	m != ""
	not m in {"tools/call", "resources/read", "resources/subscribe", "resources/unsubscribe"}
	not startswith(m, "notifications/")
}

abac_protocol_value("notifications", m) if {
	is_string(m)
	startswith(m, "notifications/")
	m != "notifications/"
}

abac_protocol_value("transport_kinds", k) if k in {"stream", "end_session"}

abac_protocol_value("responders", k) if k in abac_kinds

# --- helpers --------------------------------------------------------------------

abac_matches(pattern, s) if {
	is_string(s)
	regex.match(pattern, s)
}

abac_bad(path, want) := sprintf("data.mcpauthz.abac.%s: want %s, got %s", [abac_data_path(path), want, abac_got(object.get(cfg, path, null))])

# tools.readDocument.read_only, writers[1]
abac_data_path(path) := concat("", [s |
	some i, e in path
	s := abac_data_segment(i, e)
])

abac_data_segment(_, e) := sprintf("[%d]", [e]) if is_number(e)

abac_data_segment(0, e) := e if is_string(e)

abac_data_segment(i, e) := concat("", [".", e]) if {
	i > 0
	is_string(e)
}

# A value's type, and the value itself when it is a scalar.
abac_got(v) := type_name(v) if {
	is_object(v)
} else := type_name(v) if {
	is_array(v)
} else := sprintf("%s %s", [type_name(v), json.marshal(v)])
