package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1 "istio.io/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwapiv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// goTypes maps apiVersion/kind to the Go type the system decodes it into.
var goTypes = map[string]func() any{
	"v1/ConfigMap":                                       func() any { return &corev1.ConfigMap{} },
	"v1/Service":                                         func() any { return &corev1.Service{} },
	"v1/Secret":                                          func() any { return &corev1.Secret{} },
	"apps/v1/Deployment":                                 func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":                      func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":                 func() any { return &networkingv1.NetworkPolicy{} },
	"gateway.networking.k8s.io/v1/HTTPRoute":             func() any { return &gwapiv1.HTTPRoute{} },
	"gateway.networking.k8s.io/v1beta1/ReferenceGrant":   func() any { return &gwapiv1beta1.ReferenceGrant{} },
	"gateway.envoyproxy.io/v1alpha1/SecurityPolicy":      func() any { return &egv1a1.SecurityPolicy{} },
	"gateway.envoyproxy.io/v1alpha1/ClientTrafficPolicy": func() any { return &egv1a1.ClientTrafficPolicy{} },
}

// protoKinds are the Istio kinds, whose spec is a protobuf message (Istio
// decodes it with protojson semantics); the rest of the object is checked
// as Kubernetes object metadata.
var protoKinds = map[string]struct {
	spec func() proto.Message
	// specField is the one key of spec decoded into the message; "" for
	// the whole spec.
	specField string
}{
	"security.istio.io/v1/AuthorizationPolicy": {func() proto.Message { return &securityv1.AuthorizationPolicy{} }, ""},
	// An IstioOperator overlay may carry more of the operator's spec; the
	// examples carry only meshConfig, the mesh config message.
	"install.istio.io/v1alpha1/IstioOperator": {func() proto.Message { return &meshv1alpha1.MeshConfig{} }, "meshConfig"},
}

// strictJSON decodes data into v refusing unknown fields and trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// documents splits a YAML file into JSON documents.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i, part := range bytes.Split(data, []byte("\n---")) {
		j, err := yaml.YAMLToJSON(part)
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i+1, err)
		}
		if string(j) != "null" {
			out = append(out, j)
		}
	}
	return out
}

// decode decodes one Kubernetes-style JSON document strictly into the Go
// type of its apiVersion and kind.
func decode(doc []byte) (string, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return "", err
	}
	key := head.APIVersion + "/" + head.Kind
	if newT, ok := goTypes[key]; ok {
		return key, strictJSON(doc, newT())
	}
	pk, ok := protoKinds[key]
	if !ok {
		return key, fmt.Errorf("no Go type known for %s: add it to goTypes", key)
	}
	var obj struct {
		APIVersion string                     `json:"apiVersion"`
		Kind       string                     `json:"kind"`
		Metadata   metav1.ObjectMeta          `json:"metadata"`
		Spec       map[string]json.RawMessage `json:"spec"`
	}
	if err := strictJSON(doc, &obj); err != nil {
		return key, err
	}
	spec := obj.Spec
	if pk.specField != "" {
		for k := range spec {
			if k != pk.specField {
				return key, fmt.Errorf("spec.%s: not checked by this test (only spec.%s is)", k, pk.specField)
			}
		}
		raw := spec[pk.specField]
		return key, protojson.Unmarshal(raw, pk.spec())
	}
	raw, _ := json.Marshal(spec)
	return key, protojson.Unmarshal(raw, pk.spec())
}

// TestExamplesDecodeIntoTheirTypes decodes every Kubernetes, Gateway API,
// Envoy Gateway and Istio document under deploy/ into its system's Go
// type, strictly.
func TestExamplesDecodeIntoTheirTypes(t *testing.T) {
	seen := map[string]int{}
	for _, dir := range []string{"../kubernetes", "../envoy-gateway", "../istio"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, "-values.yaml") {
				return err
			}
			for i, doc := range documents(t, p) {
				key, err := decode(doc)
				if err != nil {
					t.Errorf("%s: document %d (%s): %v", p, i+1, key, err)
				}
				seen[key]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"apps/v1/Deployment", "gateway.envoyproxy.io/v1alpha1/SecurityPolicy", "security.istio.io/v1/AuthorizationPolicy", "install.istio.io/v1alpha1/IstioOperator"} {
		if seen[want] == 0 {
			t.Errorf("no %s checked (seen %v)", want, seen)
		}
	}
}

// TestIstiodValues: the Helm values carry a mesh config Istio accepts.
func TestIstiodValues(t *testing.T) {
	docs := documents(t, "../istio/istiod-values.yaml")
	var values map[string]json.RawMessage
	if err := strictJSON(docs[0], &values); err != nil {
		t.Fatal(err)
	}
	for k := range values {
		if k != "meshConfig" {
			t.Errorf("values key %s is not checked by this test", k)
		}
	}
	if err := protojson.Unmarshal(values["meshConfig"], &meshv1alpha1.MeshConfig{}); err != nil {
		t.Errorf("meshConfig: %v", err)
	}
}

// TestDecodeRefusesMistakes: the decoding is strict, so the test above can
// fail.
func TestDecodeRefusesMistakes(t *testing.T) {
	for name, doc := range map[string]string{
		"misspelt Envoy Gateway field": `{"apiVersion":"gateway.envoyproxy.io/v1alpha1","kind":"SecurityPolicy","metadata":{"name":"x"},"spec":{"extAuth":{"failOpn":false}}}`,
		"field newer than the API":     `{"apiVersion":"gateway.envoyproxy.io/v1alpha1","kind":"SecurityPolicy","metadata":{"name":"x"},"spec":{"extAuth":{"grpc":{},"bodyToExtAuth":{"maxRequestBytes":1,"packAsBytes":true}}}}`,
		"wrong type in a Deployment":   `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},"spec":{"replicas":"two"}}`,
		"misspelt Istio field":         `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"x"},"spec":{"actoin":"CUSTOM"}}`,
		"bad Istio enum":               `{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy","metadata":{"name":"x"},"spec":{"action":"MAYBE"}}`,
		"mesh config typo":             `{"apiVersion":"install.istio.io/v1alpha1","kind":"IstioOperator","metadata":{"name":"x"},"spec":{"meshConfig":{"extensionProviders":[{"name":"a","envoyExtAuthzGrpc":{"failOpn":true}}]}}}`,
		"unknown kind":                 `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"x"}}`,
	} {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
