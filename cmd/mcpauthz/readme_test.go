package main

// The README's examples, executed: its commands run, its config snippets
// decode, its demo transcript is what the demo prints, the make targets
// and files it names exist. A README change that stops being true fails
// here.

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/server/config"
)

const readmePath = "../../README.md"

// fence is one fenced code block of the README.
type fence struct {
	lang string
	line int // of the opening fence, 1-based
	body string
}

func readmeFences(t *testing.T) []fence {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var out []fence
	var cur *fence
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &fence{lang: strings.TrimPrefix(l, "```"), line: i + 1}
		case cur != nil && l == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += l + "\n"
		}
	}
	return out
}

func readmeText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// transcriptNoise is what differs between two demo runs: loopback ports,
// token sizes and how many housekeeping calls the SDK made.
var transcriptNoise = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`\(\d+ bytes\)`), "(N bytes)"},
	{regexp.MustCompile(`\d+ decisions \(\d+ allowed`), "N decisions (N allowed"},
}

func normalizeTranscript(s string) string {
	for _, n := range transcriptNoise {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return strings.TrimRight(s, "\n")
}

// assertReadmeTranscript: the README's demo transcript is exactly what the
// demo printed (got), but for ports, token sizes and call counts.
func assertReadmeTranscript(t *testing.T, got string) {
	t.Helper()
	var block string
	for _, f := range readmeFences(t) {
		if strings.HasPrefix(f.body, "mcpauthz demo — ") {
			block = f.body
		}
	}
	if block == "" {
		t.Fatal("README has no demo transcript block (a fence starting with \"mcpauthz demo — \")")
	}
	want, have := strings.Split(normalizeTranscript(block), "\n"), strings.Split(normalizeTranscript(got), "\n")
	for i := range max(len(want), len(have)) {
		var w, h string
		if i < len(want) {
			w = want[i]
		}
		if i < len(have) {
			h = have[i]
		}
		if w != h {
			t.Errorf("README transcript line %d differs from the demo:\n README: %q\n demo:   %q", i+1, w, h)
		}
	}
}

// readmeCommands are the mcpauthz command lines of the README's sh blocks,
// continuation lines joined, trailing comments and [optional] parts
// dropped.
func readmeCommands(t *testing.T) [][]string {
	t.Helper()
	optional := regexp.MustCompile(`\s*\[[^\]]*\]`)
	var out [][]string
	for _, f := range readmeFences(t) {
		if f.lang != "sh" {
			continue
		}
		body := strings.ReplaceAll(f.body, "\\\n", " ")
		for _, l := range strings.Split(body, "\n") {
			if i := strings.Index(l, " #"); i >= 0 {
				l = l[:i]
			}
			l = optional.ReplaceAllString(l, "")
			if fields := strings.Fields(l); len(fields) > 1 && fields[0] == "mcpauthz" {
				out = append(out, fields[1:])
			}
		}
	}
	return out
}

// TestReadmeCommandsRun runs every mcpauthz command the README shows, from
// the repository root. Placeholder files become real ones: mcpauthz.yaml
// the example config, envoy.yaml a temporary file. An eval example must be
// allowed: it shows a call the bundle permits.
func TestReadmeCommandsRun(t *testing.T) {
	cmds := readmeCommands(t)
	if len(cmds) < 3 {
		t.Fatalf("only %d mcpauthz commands found in the README: %v", len(cmds), cmds)
	}
	tmp := t.TempDir()
	t.Chdir("../..")
	for _, args := range cmds {
		for i, a := range args {
			switch a {
			case "mcpauthz.yaml":
				args[i] = "cmd/mcpauthz/config.example.yaml"
			case "envoy.yaml":
				args[i] = filepath.Join(tmp, "envoy.yaml")
			}
		}
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runCmd(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			if args[0] == "eval" && !strings.Contains(out, "== decision ==\nallow: true\n") {
				t.Errorf("the README's eval example is not allowed:\n%s", out)
			}
		})
	}
}

// TestReadmeConfigSnippetsDecode: every YAML snippet of the README that is
// a piece of the config file decodes strictly and validates, completed
// with what it leaves out. A block of alternatives ("# Keycloak", "# Okta",
// ...: a credential, then sts blocks; or one provider per product) is
// split at its comment headers and each alternative tried in its place.
func TestReadmeConfigSnippetsDecode(t *testing.T) {
	top := map[string]bool{}
	for _, k := range acceptedTopKeys() {
		top[k] = true
	}
	tried := 0
	for _, f := range readmeFences(t) {
		if f.lang != "yaml" {
			continue
		}
		var whole map[string]yaml.Node
		wholeErr := yaml.Unmarshal([]byte(f.body), &whole)
		if wholeErr == nil {
			isConfig := false
			for k := range whole {
				isConfig = isConfig || top[k]
			}
			if isConfig {
				tried++
				checkSnippet(t, f.line, 0, f.body)
				continue
			}
		}
		parts := alternatives(f.body)
		if len(parts) == 0 {
			if wholeErr != nil {
				t.Errorf("README line %d: yaml block is not YAML: %v", f.line, wholeErr)
			}
			continue // not a piece of the config file (an Envoy snippet, ...)
		}
		for i, part := range parts {
			tried++
			checkSnippet(t, f.line, i, part)
		}
	}
	if tried < 5 {
		t.Fatalf("only %d config snippets found", tried)
	}
	t.Logf("%d config snippets decoded", tried)
}

const snippetServer = "servers:\n  - id: docs\n    resource: https://mcp.example.com/docs/mcp\n"

// alternatives splits a block at its "# Title" comment lines and puts each
// part where it belongs in a config: a credential under a server, the
// keys of a delegated credential (written four deep) under one, a
// provider under an individual credential. It returns nil for a block
// that is none of these.
func alternatives(body string) []string {
	var sections []string
	var cur strings.Builder
	content := false // the current section has more than comments
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if strings.HasPrefix(l, "# ") && content {
			sections = append(sections, cur.String())
			cur.Reset()
			content = false
		}
		cur.WriteString(l + "\n")
		content = content || (strings.TrimSpace(l) != "" && !strings.HasPrefix(strings.TrimSpace(l), "#"))
	}
	sections = append(sections, cur.String())
	var out []string
	for _, s := range sections {
		first := ""
		for _, l := range strings.Split(s, "\n") {
			if l != "" && !strings.HasPrefix(strings.TrimSpace(l), "#") {
				first = l
				break
			}
		}
		switch {
		case strings.HasPrefix(first, "credential:"):
			out = append(out, snippetServer+indent(s, "    "))
		case strings.HasPrefix(first, "provider:"):
			out = append(out, snippetServer+"    credential:\n      mode: individual\n      individual:\n"+indent(s, "        "))
		case strings.HasPrefix(first, "    ") && len(out) > 0: // delegated keys, as inside the credential above
			var b strings.Builder
			b.WriteString("credential:\n  mode: delegated\n  delegated:\n    issuer: sts\n")
			for _, l := range strings.Split(s, "\n") {
				if strings.HasPrefix(l, "    ") {
					b.WriteString(l + "\n")
				}
			}
			out = append(out, snippetServer+indent(b.String(), "    "))
		default:
			return nil
		}
	}
	return out
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// checkSnippet completes a config snippet with the required blocks it
// does not set, and parses it.
func checkSnippet(t *testing.T, line, part int, snippet string) {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(snippet), &m); err != nil {
		t.Errorf("README line %d (part %d): %v\n%s", line, part, err, snippet)
		return
	}
	defaults := map[string]string{
		"version":  "version: 1\n",
		"identity": "identity: {issuers: [{name: corp, issuer: https://login.example.com}]}\n",
		"policy":   "policy: {bundles: [{path: bundles/rbac}]}\n",
		"servers":  "servers: [{id: docs, resource: https://mcp.example.com/docs/mcp, credential: {mode: public}}]\n",
	}
	doc := snippet
	for k, d := range defaults {
		if _, ok := m[k]; !ok {
			doc += d
		}
	}
	if strings.Contains(doc, "mode: individual") {
		doc += "connections: {public_url: https://mcpauthz.example.com}\nconnect: {login: {issuer: corp, client_id: mcpauthz}}\n"
	}
	if needsIssuer := strings.Contains(doc, "issuer: builtin"); needsIssuer {
		if _, ok := m["issuer"]; !ok {
			doc += "issuer: {issuer: https://mcpauthz.internal}\n"
		}
	}
	if _, err := config.Parse([]byte(doc)); err != nil {
		t.Errorf("README line %d (part %d) does not decode as config:\n%v\n--- as tried:\n%s", line, part, err, doc)
	}
}

func acceptedTopKeys() []string {
	var out []string
	t := reflect.TypeFor[config.Config]()
	for i := range t.NumField() {
		if name, ok := yamlName(t.Field(i)); ok {
			out = append(out, name)
		}
	}
	return out
}

// TestReadmeMakeTargets: every `make X` the README names is a Makefile
// target, and the Makefile's header names the README's set-up commands.
func TestReadmeMakeTargets(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllStringSubmatch(string(mk), -1) {
		targets[m[1]] = true
	}
	readme := readmeText(t)
	for _, m := range regexp.MustCompile("make ([a-z][a-z0-9-]*)").FindAllStringSubmatch(readme, -1) {
		if !targets[m[1]] && m[1] != "room" { // "to make room"
			t.Errorf("README names `make %s`, which is not a Makefile target", m[1])
		}
	}
	var setup []string
	for _, f := range readmeFences(t) {
		if f.lang == "sh" && strings.HasPrefix(f.body, "make ") {
			for _, l := range strings.Split(strings.TrimSpace(f.body), "\n") {
				setup = append(setup, strings.Fields(l)[1])
			}
			break
		}
	}
	var header []string
	for _, m := range regexp.MustCompile(`(?m)^#\s+make ([a-z0-9-]+)\s`).FindAllStringSubmatch(string(mk), -1) {
		header = append(header, m[1])
	}
	if len(setup) == 0 || !slices.Equal(setup, header[:min(len(header), len(setup))]) {
		t.Errorf("the Makefile header names %v first; the README's set-up block names %v", header, setup)
	}
}

// TestReadmePathsExist: every repository path the README links or names
// in backticks exists.
func TestReadmePathsExist(t *testing.T) {
	readme := readmeText(t)
	var paths []string
	for _, m := range regexp.MustCompile(`\]\(([^)#:]+)\)`).FindAllStringSubmatch(readme, -1) {
		paths = append(paths, m[1])
	}
	roots := `(?:cmd|server|deploy|envoy|bundles|credentials|policy|internal|e2e|\.ci)/`
	for _, m := range regexp.MustCompile("`("+roots+"[^`\\s]*)`").FindAllStringSubmatch(readme, -1) {
		paths = append(paths, m[1])
	}
	for _, m := range regexp.MustCompile("(?m)^("+roots+`[^\s]*)\s`).FindAllStringSubmatch(readme, -1) {
		paths = append(paths, m[1])
	}
	if len(paths) < 10 {
		t.Fatalf("only %d paths found", len(paths))
	}
	for _, p := range paths {
		if strings.ContainsAny(p, "<*…") {
			continue // a pattern, not a path
		}
		if _, err := os.Stat(filepath.Join("../..", p)); err != nil {
			t.Errorf("README names %s: %v", p, err)
		}
	}
}
