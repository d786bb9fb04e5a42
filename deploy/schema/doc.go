// Package schema holds the test that decodes every deployment example
// under deploy/ strictly into the Go types of the systems that read it:
// Kubernetes (k8s.io/api), the Gateway API (sigs.k8s.io/gateway-api),
// Envoy Gateway (github.com/envoyproxy/gateway/api, the oldest release the
// examples support) and Istio (istio.io/api, protojson). An unknown or
// misspelt field, a wrong type or an unknown kind fails it.
//
// It is its own module so that those dependencies stay out of mcpauthz's
// build; `make deploy-check` (part of `make test`) runs it.
package schema
