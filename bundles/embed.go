// Package bundles ships mcpauthz's example Rego bundles. Each directory is
// an OPA bundle (policy, data, tests) that `opa test` and mcpauthz both
// load; FS embeds them so the binary can run on built-in defaults.
package bundles

import "embed"

// FS holds every shipped bundle directory (rbac, abac, guardrails, scopes),
// dot files (.manifest) included.
//
//go:embed all:rbac all:abac all:guardrails all:scopes
var FS embed.FS
