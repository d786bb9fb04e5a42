package secret

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzRefYAML checks that decoding never panics, that a decoded Ref is
// valid, and that an inline secret is never echoed in the error.
func FuzzRefYAML(f *testing.F) {
	for _, s := range []string{
		"{env: API_KEY}", "{file: /run/secrets/k}", "sk_live_abc", "{env: A, file: B}",
		"{vault: x}", "{}", "[a, b]", "{env: 12}", "&a {env: A}", "{sk_live_123}", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var h holder
		err := yaml.Unmarshal([]byte("secret: "+in), &h)
		if err == nil && !h.Secret.IsZero() {
			if verr := h.Secret.Validate(); verr != nil {
				t.Fatalf("decoded invalid Ref %+v: %v", h.Secret, verr)
			}
		}
		// A string scalar is always refused and never echoed.
		var r Ref
		err = r.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: in, Line: 1})
		if err == nil {
			t.Fatalf("scalar %q accepted", in)
		}
		if len(in) >= 12 && strings.Contains(err.Error(), in) {
			t.Fatalf("error %q echoes the scalar", err)
		}
	})
}
