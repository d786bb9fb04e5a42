package envoy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// shippedBootstraps returns every Envoy bootstrap YAML under this directory
// and ../deploy: files whose top-level mapping has static_resources.
func shippedBootstraps(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, root := range []string{".", "../deploy"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if root == "../deploy" && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) || strings.HasSuffix(p, ".tmpl.yaml") {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var top map[string]any
			if yaml.Unmarshal(data, &top) == nil {
				if _, ok := top["static_resources"]; ok {
					files = append(files, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestShippedBootstrapsValidateAndAreSecure(t *testing.T) {
	files := shippedBootstraps(t)
	for _, want := range []string{"envoy.yaml", "envoy-mtls.yaml"} {
		found := false
		for _, f := range files {
			found = found || f == want
		}
		if !found {
			t.Errorf("%s not found among %v", want, files)
		}
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseBootstrapYAML(data)
			if err != nil {
				t.Fatal(err)
			}
			if issues := SecurityIssues(b); len(issues) > 0 {
				t.Errorf("SecurityIssues: %v", issues)
			}
			// At least two MCP servers and the metadata paths, as documented.
			hcm, _, _ := inspect(t, b)
			mcp, meta := 0, 0
			for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					pr := perRoute(t, r)
					switch {
					case pr.GetDisabled():
						meta++
					case pr.GetCheckSettings().GetContextExtensions()["mcp_server"] != "":
						mcp++
					}
				}
			}
			if mcp < 2 || meta < 2 {
				t.Errorf("%d MCP routes, %d metadata routes", mcp, meta)
			}
		})
	}
}

// breakage is a small edit to a valid bootstrap and where the validator
// must point.
type breakage struct {
	name    string
	re      string // regexp; its first match is replaced
	repl    string
	path    string // substring of some Issue.Path
	message string // substring of that Issue's message
}

var schemaBreakages = []breakage{
	{"typo'd field", `merge_slashes: true`, `merge_slashs: true`,
		"filters[0].typed_config.merge_slashs", `unknown field "merge_slashs"`},
	{"wrong enum value", `path_with_escaped_slashes_action: REJECT_REQUEST`, `path_with_escaped_slashes_action: REJECT_ALWAYS`,
		"filters[0].typed_config.path_with_escaped_slashes_action", `invalid value "REJECT_ALWAYS"`},
	{"missing required cluster name", `cluster_name: mcpauthz\n`, "cluster_name: \"\"\n",
		"static_resources.clusters[0].load_assignment.cluster_name", "at least 1"},
	{"negative timeout", `connect_timeout: 1s`, `connect_timeout: -1s`,
		"static_resources.clusters[0].connect_timeout", "must not be negative"},
	{"bad Any type URL", `v3\.ExtAuthzPerRoute`, `v3.ExtAuthzPerRout`,
		"routes[0].typed_per_filter_config[envoy.filters.http.ext_authz].@type", "unknown type"},
	{"missing @type", `\n *"@type": type\.googleapis\.com/envoy\.extensions\.filters\.http\.ext_authz\.v3\.ExtAuthzPerRoute`, ``,
		"routes[0].typed_per_filter_config[envoy.filters.http.ext_authz].@type", "missing"},
	{"rule inside typed_config", `max_request_bytes: \d+`, `max_request_bytes: 0`,
		"http_filters[1].typed_config.with_request_body.max_request_bytes", "greater than 0"},
	{"empty stat_prefix inside typed_config", `stat_prefix: mcp_ingress`, `stat_prefix: ""`,
		"filters[0].typed_config.stat_prefix", "at least 1"},
	{"string for a number", `port_value: 9901`, `port_value: nine`,
		"admin.address.socket_address.port_value", "expected an integer"},
	{"string for a bool", `failure_mode_allow: false`, `failure_mode_allow: nope`,
		"http_filters[1].typed_config.failure_mode_allow", "expected true or false"},
	{"bad cluster type", `type: (STRICT_DNS|STATIC)\n`, "type: DNS\n",
		"static_resources.clusters[0].type", `invalid value "DNS"`},
	{"duplicate key", `\n( +)codec_type: AUTO`, "\n${1}codec_type: AUTO\n${1}codec_type: HTTP1",
		"filters[0].typed_config.codec_type", "duplicate key"},
	{"list where a mapping belongs", `admin:\n`, "admin:\n  - x\nadmin_unused:\n",
		"admin", "expected a mapping"},
}

// securityBreakages are schema-valid edits SecurityIssues must flag.
var securityBreakages = []breakage{
	{"fail open", `failure_mode_allow: false`, `failure_mode_allow: true`,
		"http_filters[1].typed_config.failure_mode_allow", "fail closed"},
	{"partial body", `allow_partial_message: false`, `allow_partial_message: true`,
		"with_request_body.allow_partial_message", "must be false"},
	{"body as string", `pack_as_bytes: true`, `pack_as_bytes: false`,
		"with_request_body.pack_as_bytes", "must be true"},
	{"no normalization", `normalize_path: true`, `normalize_path: false`,
		"typed_config.normalize_path", "must be true"},
	{"no slash merging", `merge_slashes: true`, `merge_slashes: false`,
		"typed_config.merge_slashes", "must be true"},
	{"escaped slashes kept", `path_with_escaped_slashes_action: REJECT_REQUEST`, `path_with_escaped_slashes_action: KEEP_UNCHANGED`,
		"typed_config.path_with_escaped_slashes_action", "REJECT_REQUEST"},
	{"metadata as prefix", `match: \{ path: "/\.well-known/oauth-protected-resource" \}`, `match: { prefix: "/.well-known/oauth-protected-resource" }`,
		"virtual_hosts[0].routes[0].match", "only on an exact path"},
	{"ext_authz off on an MCP route", `check_settings:\n\s+context_extensions:\n\s+"mcp_server": "[a-z-]+"`, `disabled: true`,
		".match", "only on an exact path"},
	{"route without mcp_server", `"mcp_server": `, `"other": `,
		".typed_per_filter_config", "mcp_server"},
	{"route timeout", `(cluster: "upstream_[a-z-]+"\n(?:\s+prefix_rewrite: [^\n]+\n)?\s+)timeout: 0s`, `${1}timeout: 15s`,
		".route.timeout", "must be 0s"},
	{"no peer certificate", `include_peer_certificate: true`, `include_peer_certificate: false`,
		"include_peer_certificate", "must be true"},
	{"ext_proc without mode override", `allow_mode_override: true`, `allow_mode_override: false`,
		"http_filters[2].typed_config.allow_mode_override", "must be true"},
	{"ext_proc without the ext_authz metadata", `untyped: \["envoy\.filters\.http\.ext_authz"\]`, `untyped: ["other"]`,
		"http_filters[2].typed_config.metadata_options.forwarding_namespaces.untyped", "must list"},
	{"upstream may compress", `value: "identity"`, `value: "gzip"`,
		".request_headers_to_add", "accept-encoding: identity"},
	{"ext_authz after router", `(?s)(\n {10}- name: envoy\.filters\.http\.ext_authz\n.*?)(\n {10}- name: envoy\.filters\.http\.router\n {12}typed_config:\n {14}"@type": [^\n]+)`, "${2}${1}",
		"http_filters", "before the router"},
}

// applyBreakage replaces the first match of b.re outside a comment.
func applyBreakage(t *testing.T, src []byte, b breakage) []byte {
	t.Helper()
	re := regexp.MustCompile(b.re)
	var loc []int
	for _, l := range re.FindAllSubmatchIndex(src, -1) {
		start := l[0]
		if src[start] == '\n' {
			start++
		}
		lineStart := strings.LastIndexByte(string(src[:start]), '\n') + 1
		if !strings.Contains(string(src[lineStart:start]), "#") {
			loc = l
			break
		}
	}
	if loc == nil {
		t.Fatalf("pattern %q not found outside comments", b.re)
	}
	var out []byte
	out = append(out, src[:loc[0]]...)
	out = re.Expand(out, []byte(b.repl), src, loc)
	return append(out, src[loc[1]:]...)
}

func findIssue(issues []Issue, path, msg string) bool {
	for _, is := range issues {
		if strings.Contains(is.Path, path) && strings.Contains(is.Message, msg) {
			return true
		}
	}
	return false
}

func TestValidateCatchesBreakagesInEveryShippedBootstrap(t *testing.T) {
	for _, f := range shippedBootstraps(t) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range schemaBreakages {
			t.Run(f+"/"+b.name, func(t *testing.T) {
				err := ValidateBootstrapYAML(applyBreakage(t, src, b))
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v, want *ValidationError", err)
				}
				if !findIssue(ve.Issues, b.path, b.message) {
					t.Fatalf("no issue at %q with %q in:\n%v", b.path, b.message, err)
				}
				for _, is := range ve.Issues {
					if is.Line == 0 {
						t.Errorf("issue without a line: %v", is)
					}
				}
			})
		}
		for _, b := range securityBreakages {
			t.Run(f+"/security/"+b.name, func(t *testing.T) {
				bs, err := ParseBootstrapYAML(applyBreakage(t, src, b))
				if err != nil {
					t.Fatalf("breakage should stay schema-valid: %v", err)
				}
				if issues := SecurityIssues(bs); !findIssue(issues, b.path, b.message) {
					t.Fatalf("no issue at %q with %q in %v", b.path, b.message, issues)
				}
			})
		}
	}
}

func TestValidateDocumentLevelErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"empty", "", "empty document"},
		{"two documents", "admin: {}\n---\nadmin: {}\n", "more than one YAML document"},
		{"not YAML", "admin: [\n", "invalid YAML"},
		{"scalar root", "hello\n", "expected a mapping for envoy.config.bootstrap.v3.Bootstrap"},
		{"recursive alias", "node: {metadata: &x {a: [*x]}}\n", "too deeply nested"},
		{"alias bomb", "node:\n  metadata:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
			"    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" +
			"    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
			"    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n", "too large"},
		{"oneof twice", "static_resources:\n  clusters:\n  - name: c\n    type: STATIC\n    cluster_type: {name: x}\n", "only one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateBootstrapYAML([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "envoy: invalid bootstrap: ") {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestIssueString(t *testing.T) {
	for _, tt := range []struct {
		is   Issue
		want string
	}{
		{Issue{Path: "a.b[0]", Line: 3, Message: "bad"}, "a.b[0] (line 3): bad"},
		{Issue{Path: "a", Message: "bad"}, "a: bad"},
		{Issue{Message: "empty"}, "(document): empty"},
	} {
		if got := tt.is.String(); got != tt.want {
			t.Errorf("got %q want %q", got, tt.want)
		}
	}
}

// FuzzValidateBootstrapYAML: arbitrary input never panics, and accepted
// input always decodes to a Bootstrap.
func FuzzValidateBootstrapYAML(f *testing.F) {
	for _, s := range []string{
		"admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}\n",
		"static_resources: {clusters: [{name: c, connect_timeout: -1s}]}\n",
		"static_resources: {listeners: [{filter_chains: [{filters: [{name: x, typed_config: {\"@type\": nope}}]}]}]}\n",
		"a: &x [*x]\n",
	} {
		f.Add([]byte(s))
	}
	if y, err := RenderBootstrap(ExampleParams()); err == nil {
		f.Add(y)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBootstrapYAML(data)
		if err == nil && b == nil {
			t.Fatal("nil Bootstrap without error")
		}
	})
}
