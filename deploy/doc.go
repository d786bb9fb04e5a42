// Package deploy holds mcpauthz's deployment examples (Docker Compose,
// Kubernetes, Envoy Gateway, Istio) as plain YAML. It has no code; its tests
// check that every file parses, that the mcpauthz configs in it load, and
// that the security-relevant settings stay as documented. Envoy bootstraps
// under deploy/ are validated by the tests of package envoy.
package deploy
