# Attribute-based access control for a document MCP server.
#
# Decides on attributes of the call rather than on roles: the caller's
# organization (principal.org) against the owner, in data, of every document
# the call names (tool arguments at any depth, resource URIs), the caller's
# kind (only the kinds in `writers` may change data) and the shape of the
# tool arguments (undeclared, missing or ill-typed arguments deny).
#
# Nothing the caller writes is trusted to say which organization a document
# belongs to: ids and URIs must match a strict grammar first, and the owner
# always comes from data.mcpauthz.abac.documents.
#
# Input: mcpauthz.input/v1. Output: data.mcpauthz.decision
# (mcpauthz.decision/v1). All facts live in data.mcpauthz.abac (data.json);
# data_check.rego refuses the bundle when they are not well-formed.
package mcpauthz

cfg := data.mcpauthz.abac

org := input.principal.org

tool_cfg := cfg.tools[input.mcp.tool]

# Absent or null arguments are no arguments.
args := input.mcp.arguments if {
	input.mcp.arguments != null
} else := {}

# --- grammar ------------------------------------------------------------------

# An organization or a bare document id: a letter or digit, then up to 63
# letters, digits, "_" or "-". Nothing an upstream could decode, normalize or
# split differently: no ".", "/", "\", "%", space, "?", "#", and no
# non-ASCII character (a fullwidth slash U+FF0F or a look-alike letter).
abac_id_grammar := `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`

# An organization-qualified id "<org>/<id>": exactly one "/".
abac_qualified_grammar := `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}/[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`

# Argument names (the keys of arguments, at any depth).
abac_arg_name_grammar := `^[A-Za-z_][A-Za-z0-9_-]{0,63}$`

# --- the decision -----------------------------------------------------------

# The first two branches are the hot path: the common tool call, decided
# from facts built once per policy load without walking the arguments or
# calling a rule. They allow a subset of what the branches after them
# allow, with the same value: an authenticated, non-housekeeping request of
# a caller with an organization, to a tool whose argument names are all
# plain, where every argument is a string the tool declares as "string" or
# "document_id", every argument the tool requires is present and every
# document names, bare or qualified with its organization, a known document
# of the caller's organization. The first branch is for read-only tools, the
# second for the kinds in `writers`. Everything else, every denial
# included, takes the full path below.
decision := abac_allowed if {
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
	input.principal.authenticated == true
	not input.mcp.method in cfg.protocol.requests
	not input.mcp.kind in cfg.protocol.transport_kinds
	is_string(input.principal.org)
	input.principal.org != ""
	fast := abac_fast_tools[input.mcp.tool]
	fast.read_only == true
	is_object(input.mcp.arguments)
	every name, value in input.mcp.arguments {
		is_string(value)
		name in fast.names
	}
	every name in fast.required {
		name in object.keys(input.mcp.arguments)
	}
	owned := abac_fast_documents[input.principal.org]
	every _, value in object.filter(input.mcp.arguments, fast.documents) {
		value in owned
	}
} else := abac_allowed if {
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
	input.principal.authenticated == true
	not input.mcp.method in cfg.protocol.requests
	not input.mcp.kind in cfg.protocol.transport_kinds
	is_string(input.principal.org)
	input.principal.org != ""
	fast := abac_fast_tools[input.mcp.tool]
	input.principal.kind in cfg.writers
	is_object(input.mcp.arguments)
	every name, value in input.mcp.arguments {
		is_string(value)
		name in fast.names
	}
	every name in fast.required {
		name in object.keys(input.mcp.arguments)
	}
	owned := abac_fast_documents[input.principal.org]
	every _, value in object.filter(input.mcp.arguments, fast.documents) {
		value in owned
	}
} else := abac_deny("unauthenticated", "authentication is required", 401) if {
	not abac_authenticated
} else := abac_allow("housekeeping") if {
	abac_housekeeping
} else := abac_deny("response_not_allowed", abac_response_message, 403) if {
	input.mcp.kind == "response"
} else := abac_deny("no_organization", "the caller belongs to no organization", 403) if {
	not abac_has_org
} else := abac_tool_decision if {
	input.mcp.method == "tools/call"
	input.mcp.kind == "request"
} else := abac_resource_decision if {
	input.mcp.kind == "request"
	input.mcp.method in cfg.resource_methods
} else := abac_deny("method_not_allowed", abac_method_message, 403)

# --- the hot path's facts ------------------------------------------------------

# The tools the hot path may decide: their arguments an object of plain
# names. "names" are the arguments typed "string" or "document_id",
# "documents" those typed "document_id", "required" those not optional.
abac_fast_tools[name] := fast if {
	t := cfg.tools[name]
	is_object(t.args)
	every k, _ in t.args {
		regex.match(abac_arg_name_grammar, k)
	}
	fast := {
		"read_only": t.read_only == true,
		"names": {k | some k, spec in t.args; spec.type in {"string", "document_id"}},
		"documents": {k | some k, spec in t.args; spec.type == "document_id"},
		"required": {k | some k, spec in t.args; not spec.optional == true},
	}
}

# Per organization, every text that names one of its documents as
# abac_ref reads it: the bare id and "<org>/<id>", each matching its
# grammar.
abac_fast_documents[o] := bare | qualified if {
	some d in cfg.documents
	o := d.org
	is_string(o)
	bare := {id | some id, x in cfg.documents; x.org == o; regex.match(abac_id_grammar, id)}
	qualified := {t | some id, x in cfg.documents; x.org == o; t := concat("/", [o, id]); regex.match(abac_qualified_grammar, t)}
}

abac_allowed := abac_allow("allowed")

# Only an explicit true counts; a missing principal is unauthenticated.
abac_authenticated if input.principal.authenticated == true

# Missing, null or empty org: nothing can be inside "your organization".
abac_has_org if {
	is_string(org)
	org != ""
}

# --- protocol housekeeping --------------------------------------------------

# Requests and notifications matched exactly, with their message kind: a
# "notification" carrying an id is a request and is refused.
abac_housekeeping if {
	input.mcp.kind == "request"
	input.mcp.method in cfg.protocol.requests
}

abac_housekeeping if {
	input.mcp.kind == "notification"
	input.mcp.method in cfg.protocol.notifications
}

abac_housekeeping if input.mcp.kind in cfg.protocol.transport_kinds

# A JSON-RPC response answers the server's own request (elicitation,
# sampling, roots); the input does not say which, so only the kinds in
# protocol.responders (a person present) may answer at all.
abac_housekeeping if {
	input.mcp.kind == "response"
	input.principal.kind in cfg.protocol.responders
}

abac_response_message := sprintf("principal kind %q may not answer server requests (elicitation, sampling, roots): a person must be present", [input.principal.kind])

abac_method_message := sprintf("%q with an id is a request, not a notification", [input.mcp.method]) if {
	input.mcp.kind == "request"
	startswith(input.mcp.method, "notifications/")
} else := sprintf("%s %q is not allowed on this server", [input.mcp.kind, input.mcp.method])

# --- tools/call -------------------------------------------------------------

abac_tool_decision := abac_deny("unknown_tool", sprintf("tool %q is not known", [input.mcp.tool]), 403) if {
	not tool_cfg
} else := abac_deny("agent_read_only", sprintf("principal kind %q may only call read-only tools; %s changes data", [input.principal.kind, input.mcp.tool]), 403) if {
	# Fail closed: only an explicit `"read_only": true` is read-only, and
	# only the kinds listed in writers may write.
	not tool_cfg.read_only == true
	not input.principal.kind in cfg.writers
} else := abac_deny("invalid_arguments", "arguments must be a JSON object", 400) if {
	not is_object(args)
} else := abac_deny("invalid_arguments", abac_first(arg_errors), 400) if {
	count(arg_errors) > 0
} else := abac_documents_decision(arg_documents)

# Argument problems, as messages. Arguments are declared per tool in
# tools.<tool>.args by a flat name: "id", "options.baseline" (a key of the
# object "options"), "documents[]" (every element of the array
# "documents"). Every value in the arguments, at any depth, must be declared
# with its JSON type; declared arguments are required unless optional.
arg_errors contains sprintf("argument %q is not declared by %s", [abac_arg_display(path), input.mcp.tool]) if {
	walk(args, [path, _])
	count(path) > 0
	not abac_declared(path)
}

arg_errors contains sprintf("argument %q must be %s, got %s", [abac_arg_display(path), object.get(abac_type_description, t, "of an unknown type"), type_name(value)]) if {
	walk(args, [path, value])
	t := abac_spec_type(abac_declared(path))
	not abac_type_ok(value, t)
}

arg_errors contains sprintf("argument %q is required", [abac_arg_display(array.concat(path, [name]))]) if {
	walk(args, [path, value])
	is_object(value)
	prefix := abac_arg_name(path)
	some key, spec in tool_cfg.args
	not spec.optional == true
	name := abac_child(prefix, key)
	not name in object.keys(value)
}

arg_errors contains sprintf("argument %q is not a document id: want <id> or <org>/<id>, each a letter or digit then up to 63 of A-Z a-z 0-9 _ -", [abac_arg_display(path)]) if {
	walk(args, [path, value])
	abac_spec_type(abac_declared(path)) == "document_id"
	is_string(value)
	not abac_ref(value)
}

# The declaration of the argument at path, if every key on the way is a
# plain name (so "options.baseline" as one key cannot pose as a nested one).
abac_declared(path) := tool_cfg.args[abac_arg_name(path)] if {
	every e in path {
		abac_plain_segment(e)
	}
}

abac_plain_segment(e) if is_number(e)

abac_plain_segment(e) if {
	is_string(e)
	regex.match(abac_arg_name_grammar, e)
}

# The flat name of an argument path: ["options", "baseline"] ->
# "options.baseline", ["documents", 2] -> "documents[]".
abac_arg_name(path) := concat("", [s |
	some i, e in path
	s := abac_arg_segment(i, e, "[]")
])

# For messages, with the index: "documents[2]".
abac_arg_display(path) := concat("", [s |
	some i, e in path
	s := abac_arg_segment(i, e, sprintf("[%d]", [e]))
])

abac_arg_segment(_, e, index) := index if is_number(e)

abac_arg_segment(0, e, _) := e if is_string(e)

abac_arg_segment(i, e, _) := concat("", [".", e]) if {
	i > 0
	is_string(e)
}

# The name of a direct member of the object at flat name prefix declared
# by key, e.g. abac_child("options", "options.baseline") = "baseline".
abac_child("", key) := key if not regex.match(`[.\[]`, key)

abac_child(prefix, key) := rest if {
	prefix != ""
	startswith(key, concat("", [prefix, "."]))
	rest := substring(key, count(prefix) + 1, -1)
	not regex.match(`[.\[]`, rest)
}

# A declaration without a type (or that is not an object) accepts nothing.
abac_spec_type(spec) := spec.type if {
	is_string(spec.type)
} else := "undeclared"

abac_type_ok(v, "document_id") if is_string(v)

abac_type_ok(v, t) if {
	t in {"string", "number", "boolean", "array", "object"}
	type_name(v) == t
}

abac_type_description := {
	"document_id": "a document id (string)",
	"string": "a string",
	"number": "a number",
	"boolean": "a boolean",
	"array": "an array",
	"object": "an object",
}

# Every document the arguments name, wherever the tool declares one.
arg_documents contains abac_ref(value) if {
	walk(args, [path, value])
	abac_spec_type(abac_declared(path)) == "document_id"
	is_string(value)
}

# --- documents ----------------------------------------------------------------

# A document reference: "<org>/<id>" or a bare "<id>"; undefined when the
# text does not match the grammar.
abac_ref(text) := {"text": text, "org": o, "id": id} if {
	regex.match(abac_qualified_grammar, text)
	[o, id] := split(text, "/")
} else := {"text": text, "org": null, "id": text} if {
	regex.match(abac_id_grammar, text)
}

# The owner of a document comes from data, never from the caller's text.
abac_owner(id) := o if {
	o := cfg.documents[id].org
	is_string(o)
}

# Every reference must name a known document, agree with its owner when it
# names an organization, and be owned by the caller's organization.
abac_documents_decision(refs) := abac_deny("unknown_document", sprintf("document %q is not known", [abac_first(unknown)]), 403) if {
	unknown := {r.text | some r in refs; not abac_owner(r.id)}
	count(unknown) > 0
} else := abac_deny("document_org_mismatch", sprintf("document %q names organization %q but belongs to %q", abac_first(mismatched)), 403) if {
	mismatched := {[r.text, r.org, abac_owner(r.id)] | some r in refs; r.org != null; r.org != abac_owner(r.id)}
	count(mismatched) > 0
} else := abac_deny("cross_org", sprintf("document %q is outside organization %q", [abac_first(foreign), org]), 403) if {
	foreign := {r.text | some r in refs; abac_owner(r.id) != org}
	count(foreign) > 0
} else := abac_allow("allowed")

# --- resources/* ------------------------------------------------------------

# <resource_prefix><org>/<id>, e.g. docs://acme/doc-1, checked like an
# organization-qualified document id.
abac_resource_ref := object.union(abac_ref(rest), {"text": input.mcp.uri}) if {
	startswith(input.mcp.uri, cfg.resource_prefix)
	rest := substring(input.mcp.uri, count(cfg.resource_prefix), -1)
	regex.match(abac_qualified_grammar, rest)
}

abac_resource_decision := abac_deny("unknown_resource", sprintf("resource URI is not %s<org>/<id> (each a letter or digit then up to 63 of A-Z a-z 0-9 _ -)", [cfg.resource_prefix]), 403) if {
	not abac_resource_ref
} else := abac_documents_decision({abac_resource_ref})

# --- helpers ----------------------------------------------------------------

# The smallest element, so messages are deterministic.
abac_first(s) := sort(s)[0]

abac_allow(reason) := {
	"allow": true,
	"reason": reason,
	"http_status": 200,
}

abac_deny(reason, message, status) := {
	"allow": false,
	"reason": reason,
	"message": message,
	"http_status": status,
}
