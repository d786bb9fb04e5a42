# Attribute-based access control for a document MCP server.
#
# Decides on attributes of the call rather than on roles: the caller's
# organization (principal.org) against the organization of every document the
# call names (tool arguments, resource URIs), the caller's kind (agents are
# read-only) and the shape of the tool arguments (missing or ill-typed
# arguments deny).
#
# Input: mcpauthz.input/v1. Output: data.mcpauthz.decision
# (mcpauthz.decision/v1). All facts live in data.mcpauthz.abac (data.json).
package mcpauthz

cfg := data.mcpauthz.abac

org := input.principal.org

tool_cfg := cfg.tools[input.mcp.tool]

args := input.mcp.arguments

# --- the decision -----------------------------------------------------------

decision := abac_deny("unauthenticated", "authentication is required", 401) if {
	not abac_authenticated
} else := abac_allow("housekeeping") if {
	abac_housekeeping
} else := abac_deny("no_organization", "the caller belongs to no organization", 403) if {
	not abac_has_org
} else := abac_tool_decision if {
	input.mcp.method == "tools/call"
} else := abac_resource_decision if {
	input.mcp.method in cfg.resource_methods
} else := abac_deny("method_not_allowed", sprintf("method %q is not allowed on this server", [input.mcp.method]), 403)

# Only an explicit true counts; a missing principal is unauthenticated.
abac_authenticated if input.principal.authenticated == true

# Missing, null or empty org: nothing can be inside "your organization".
abac_has_org if {
	is_string(org)
	org != ""
}

abac_housekeeping if input.mcp.kind in cfg.housekeeping_kinds

abac_housekeeping if input.mcp.method in cfg.housekeeping_methods

abac_housekeeping if startswith(input.mcp.method, "notifications/")

abac_is_agent if input.principal.kind in cfg.agent_kinds

# --- tools/call -------------------------------------------------------------

abac_tool_decision := abac_deny("unknown_tool", sprintf("tool %q is not known", [input.mcp.tool]), 403) if {
	not tool_cfg
} else := abac_deny("agent_read_only", sprintf("agents may only call read-only tools; %s changes data", [input.mcp.tool]), 403) if {
	abac_is_agent
	not tool_cfg.read_only
} else := abac_deny("invalid_arguments", abac_first(arg_errors), 400) if {
	count(arg_errors) > 0
} else := abac_deny("unknown_document", sprintf("document %q is not known", [abac_first(unknown_documents)]), 403) if {
	count(unknown_documents) > 0
} else := abac_deny("cross_org", sprintf("document %q is outside organization %q", [abac_first(foreign_documents), org]), 403) if {
	count(foreign_documents) > 0
} else := abac_allow("allowed")

# Argument problems, as messages. An absent or non-object arguments value
# is one problem; otherwise every argument the tool declares must be present
# with its declared JSON type, and every document reference present
# (document_args, required or not) must be a non-empty string.
arg_errors contains "arguments must be a JSON object" if not is_object(args)

arg_errors contains sprintf("argument %q is required", [name]) if {
	is_object(args)
	some name, _ in tool_cfg.args
	not name in object.keys(args)
}

arg_errors contains sprintf("argument %q must be a %s, got %s", [name, want, type_name(args[name])]) if {
	is_object(args)
	some name, want in tool_cfg.args
	type_name(args[name]) != want
}

arg_errors contains sprintf("argument %q must be a string, got %s", [name, type_name(args[name])]) if {
	is_object(args)
	some name in cfg.document_args
	not is_string(args[name])
	name in object.keys(args)
}

arg_errors contains sprintf("argument %q must not be empty", [name]) if {
	is_object(args)
	some name in cfg.document_args
	args[name] == ""
}

abac_nonempty_string(x) if {
	is_string(x)
	x != ""
}

# Every document the call names through one of document_args.
documents contains args[name] if {
	is_object(args)
	some name in cfg.document_args
	abac_nonempty_string(args[name])
}

unknown_documents contains d if {
	some d in documents
	not document_org(d)
}

foreign_documents contains d if {
	some d in documents
	document_org(d) != org
}

# A document id is either organization-qualified ("acme/doc-7") or looked
# up in data.mcpauthz.abac.documents.
document_org(id) := o if {
	[o, rest] := split(id, "/")
	o != ""
	rest != ""
} else := cfg.documents[id].org if {
	not contains(id, "/")
}

# --- resources/* ------------------------------------------------------------

abac_resource_decision := abac_deny("unknown_resource", sprintf("resource %q is not a %s<org>/<id> URI", [input.mcp.uri, cfg.resource_prefix]), 403) if {
	not resource_org
} else := abac_deny("cross_org", sprintf("resource %q is outside organization %q", [input.mcp.uri, org]), 403) if {
	resource_org != org
} else := abac_allow("allowed")

# docs://<org>/<id>: exactly two non-empty path segments.
resource_org := o if {
	startswith(input.mcp.uri, cfg.resource_prefix)
	[o, id] := split(trim_prefix(input.mcp.uri, cfg.resource_prefix), "/")
	o != ""
	id != ""
}

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
