// Package policy evaluates mcpauthz authorization decisions with OPA used as
// a library.
//
// An Engine loads one or more OPA bundles (directories or .tar.gz files),
// compiles them together, prepares the configured query off the hot path and
// publishes the prepared query behind a single atomic pointer. Evaluate
// converts an *Input to an AST value by hand, evaluates the prepared query
// and decodes the result into a Decision without JSON round trips. Run
// watches the bundles (fsnotify, polling as fallback) and swaps in a new
// policy only when it compiled; a broken edit leaves the previous policy
// serving and is reported in Status.
//
// The input document (InputVersion) and the decision document
// (DecisionVersion) are the policy contract; the decision accepts the
// OPA-Envoy result shape so existing OPA-Envoy policies port unchanged.
//
// All exported methods of Engine are safe for concurrent use.
package policy
