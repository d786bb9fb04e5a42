package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/mcpauthz/mcpauthz/server/config"
)

// typeRefs derives from the config types every field that holds a secret
// or a path serve reads: every secret.Ref and policy.KeySource, and every
// string field whose YAML name says it is a path (file, path, *_file,
// *_dir, *_path), plus audit.output (a path unless stdout, stderr or off).
// It returns them by type path (servers[].credential.static.headers[].value).
func typeRefs(t reflect.Type) map[string]string {
	out := map[string]string{}
	var walk func(t reflect.Type, field string)
	walk = func(t reflect.Type, field string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case t == refType:
			out[field] = "secret"
			return
		case t == keySourceType:
			out[field] = "public key"
			return
		}
		switch t.Kind() {
		case reflect.Struct:
			for i := range t.NumField() {
				if name, ok := yamlName(t.Field(i)); ok {
					walk(t.Field(i).Type, joinPath(field, name))
				}
			}
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), field+"[]")
		case reflect.Map:
			walk(t.Elem(), joinPath(field, "*"))
		case reflect.String:
			name := field[strings.LastIndexByte(field, '.')+1:]
			if name == "file" || name == "path" || field == "audit.output" ||
				strings.HasSuffix(name, "_file") || strings.HasSuffix(name, "_dir") || strings.HasSuffix(name, "_path") {
				out[field] = "path"
			}
		}
	}
	walk(t, "")
	return out
}

// TestDeepKnowsEveryPathField: every path-like field of the config types is
// one --deep checks, and every field --deep lists exists.
func TestDeepKnowsEveryPathField(t *testing.T) {
	refs := typeRefs(reflect.TypeFor[config.Config]())
	for f, kind := range refs {
		if _, ok := pathFields[f]; kind == "path" && !ok {
			t.Errorf("%s looks like a path serve reads, but validate --deep does not check it: add it to pathFields (deep.go)", f)
		}
	}
	for f := range pathFields {
		if refs[f] != "path" {
			t.Errorf("pathFields lists %s, which is not a path-like string field of config.Config", f)
		}
	}
	if len(refs) < 15 {
		t.Fatalf("only %d references found by reflection: %v", len(refs), refs)
	}
}

// deepFixture sets every secret and path reference the config types have
// (TestDeepChecksEveryReference checks that it does), each with its own
// file or variable, so that each can be broken alone.
const deepFixture = `version: 1
identity:
  issuers:
    - name: idp
      issuer: https://idp.example.com
      introspection:
        endpoint: https://idp.example.com/introspect
        client_id: mcpauthz
        client_secret: {env: DEEP_INTROSPECTION}
policy:
  persist_dir: {{.Dir}}/persist/bundles
  bundles:
    - path: {{.Bundle}}
    - name: remote
      url: https://bundles.example.com/mcp.tar.gz
      persist: true
      credentials: {bearer: {token: {file: {{.Dir}}/bundle-token}}}
      signing: {keys: [{id: k, algorithm: ES256, public_key: {file: {{.Dir}}/signing.pem}}]}
issuer:
  issuer: https://mcpauthz.example.com
  keys: [{file: {{.Dir}}/issuer.pem}]
store:
{{- if .OPAFile}}
  driver: postgres
  dsn: {env: DEEP_PG_DSN}
{{- else}}
  driver: sqlite
  path: {{.Dir}}/state/state.db
{{- end}}
  encryption: {keys: [{id: k1, secret: {file: {{.Dir}}/store-key}}]}
connections: {public_url: https://mcpauthz.example.com}
connect:
  login: {issuer: idp, client_id: c, client_secret: {env: DEEP_CONNECT_LOGIN}}
  cookie_key: {file: {{.Dir}}/cookie-key}
audit:
  output: {{.Dir}}/audit/decisions.log
{{- if .OPAFile}}
  opa: {output: file, file: {{.Dir}}/opa/decisions.log}
{{- else}}
  opa: {output: http, url: https://logs.example.com/logs, bearer_token: {env: DEEP_OPA_TOKEN}}
{{- end}}
servers:
  - id: s1
    resource: https://mcp.example.com/s1
    credential: {mode: static, static: {headers: [{name: X-Key, value: {env: DEEP_S1_STATIC}}]}}
    credential_options:
      - {mode: service_account, service_account: {secret: {file: {{.Dir}}/s1-sa}}}
      - mode: delegated
        delegated:
          issuer: sts
          actor_token: {source: config, token: {file: {{.Dir}}/s1-actor}}
          sts: {token_url: https://sts.example.com/token, client_id: c, client_secret: {env: DEEP_S1_STS}, audience: a}
  - id: s2
    resource: https://mcp.example.com/s2
    credential:
      mode: service_account
      service_account: {token_url: https://idp.example.com/token, client_id: c, client_secret: {file: {{.Dir}}/s2-cc}}
    credential_options:
      - {mode: static, static: {headers: [{name: X-Key, value: {file: {{.Dir}}/s2-static}}]}}
      - mode: delegated
        delegated:
          issuer: sts
          sts: {token_url: https://sts.example.com/token, client_id: c, client_auth: private_key_jwt, private_key: {file: {{.Dir}}/s2-sts.pem}, audience: a}
  - id: s3
    resource: https://mcp.example.com/s3
    credential:
      mode: delegated
      delegated:
        issuer: sts
        actor_token: {source: config, token: {env: DEEP_S3_ACTOR}}
        sts: {token_url: https://sts.example.com/token, client_id: c, client_secret: {file: {{.Dir}}/s3-sts}, audience: a}
    credential_options:
      - mode: service_account
        service_account: {token_url: https://idp.example.com/token, client_id: c, client_secret: {env: DEEP_S3_CC}}
  - id: s4
    resource: https://mcp.example.com/s4
    credential: {mode: service_account, service_account: {secret: {env: DEEP_S4_SA}}}
  - id: s5
    resource: https://mcp.example.com/s5
    credential:
      mode: delegated
      delegated:
        issuer: sts
        sts: {token_url: https://sts.example.com/token, client_id: c, client_auth: private_key_jwt, private_key: {env: DEEP_S5_KEY}, audience: a}
  - id: s6
    resource: https://mcp.example.com/s6
    credential:
      mode: individual
      individual: {provider: {token_url: https://p.example.com/t, authorization_url: https://p.example.com/a, client_id: c, client_secret: {file: {{.Dir}}/s6-individual}}}
    credential_options:
      - mode: service_account
        service_account: {oauth: {provider: {token_url: https://p.example.com/t, authorization_url: https://p.example.com/a, client_id: c, client_secret: {env: DEEP_S6_OAUTH}}}}
  - id: s7
    resource: https://mcp.example.com/s7
    credential:
      mode: service_account
      service_account: {oauth: {provider: {token_url: https://p.example.com/t, authorization_url: https://p.example.com/a, client_id: c, client_secret: {file: {{.Dir}}/s7-oauth}}}}
    credential_options:
      - mode: individual
        individual: {provider: {token_url: https://p.example.com/t, authorization_url: https://p.example.com/a, client_id: c, client_secret: {env: DEEP_S7_INDIVIDUAL}}}
`

type deepEnv struct {
	dir, bundle string
	docs        []string // deepFixture rendered: the http OPA log + sqlite store, the file OPA log + postgres store
}

// newDeepEnv writes every file deepFixture names, with valid contents, and
// sets its variables.
func newDeepEnv(t *testing.T) *deepEnv {
	t.Helper()
	dir := t.TempDir()
	bundle, _ := filepath.Abs("../../bundles/rbac")
	e := &deepEnv{dir: dir, bundle: bundle}
	pemKey := func() (priv, pub []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := x509.MarshalPKCS8PrivateKey(k)
		p, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: d}), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p})
	}
	issuerKey, _ := pemKey()
	stsKey, signingPub := pemKey()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	storeKey := base64.StdEncoding.EncodeToString(raw)
	files := map[string]string{
		"bundle-token": "t", "signing.pem": string(signingPub), "issuer.pem": string(issuerKey),
		"store-key": storeKey, "s1-sa": "sa", "s1-actor": "actor", "s2-cc": "cc", "s2-static": "k",
		"s2-sts.pem": string(stsKey), "s3-sts": "secret", "blocker": "a file, so nothing can live below it",
		"cookie-key": base64.StdEncoding.EncodeToString(raw[:]), "s6-individual": "i", "s7-oauth": "o",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"state", "audit", "opa"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]string{"DEEP_INTROSPECTION": "i", "DEEP_OPA_TOKEN": "o", "DEEP_S1_STATIC": "s",
		"DEEP_S1_STS": "s", "DEEP_S3_ACTOR": "a", "DEEP_S3_CC": "c", "DEEP_S4_SA": "s", "DEEP_S5_KEY": string(stsKey),
		"DEEP_CONNECT_LOGIN": "l", "DEEP_S6_OAUTH": "o", "DEEP_S7_INDIVIDUAL": "i",
		"DEEP_PG_DSN": "postgres://mcpauthz@127.0.0.1:1/mcpauthz"} {
		t.Setenv(name, v)
	}
	tmpl := template.Must(template.New("deep").Parse(deepFixture))
	for _, opaFile := range []bool{false, true} {
		var b strings.Builder
		if err := tmpl.Execute(&b, map[string]any{"Dir": dir, "Bundle": bundle, "OPAFile": opaFile}); err != nil {
			t.Fatal(err)
		}
		e.docs = append(e.docs, b.String())
	}
	return e
}

func (e *deepEnv) validate(t *testing.T, doc string) (code int, stdout, stderr string) {
	t.Helper()
	cfg := filepath.Join(e.dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code = run(context.Background(), []string{"validate", "--deep", "--config", cfg}, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestDeepChecksEveryReference holds validate --deep and serve in step:
// the fixture sets every secret and path field the config types have (by
// reflection), --deep accepts it whole, and breaking any one reference
// alone makes --deep fail naming exactly that field.
func TestDeepChecksEveryReference(t *testing.T) {
	e := newDeepEnv(t)
	want := typeRefs(reflect.TypeFor[config.Config]())
	covered := map[string]bool{}
	for i, doc := range e.docs {
		cfg, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatalf("fixture %d: %v", i, err)
		}
		for _, r := range references(cfg) {
			covered[r.field] = true
		}
	}
	for f := range want {
		if !covered[f] {
			t.Errorf("deepFixture does not set %s: add it, so that --deep is shown to check it", f)
		}
	}
	for i, doc := range e.docs {
		code, out, errOut := e.validate(t, doc)
		if code != 0 {
			t.Fatalf("fixture %d: exit %d\n%s%s", i, code, out, errOut)
		}
		cfg, _ := config.Parse([]byte(doc))
		n := len(references(cfg))
		if !strings.Contains(out, "files: ") || !regexp.MustCompile(`secrets: (\d+) of \d+`).MatchString(out) {
			t.Fatalf("fixture %d: no summary:\n%s", i, out)
		}
		if n < 15 {
			t.Fatalf("fixture %d: only %d references", i, n)
		}
	}
	blocked := filepath.Join(e.dir, "blocker", "x")
	for i, doc := range e.docs {
		cfg, _ := config.Parse([]byte(doc))
		for _, r := range references(cfg) {
			if i > 0 && r.field != "audit.opa.file" {
				continue // the second fixture only adds the file log
			}
			t.Run(r.path, func(t *testing.T) {
				broken := doc
				if r.kind == refSecret && r.ref.Env != "" {
					t.Setenv(r.ref.Env, "")
				} else {
					file := r.file
					if r.kind == refSecret {
						file = r.ref.File
					}
					if strings.Count(doc, file) != 1 {
						t.Fatalf("%s is not unique in the fixture", file)
					}
					broken = strings.Replace(doc, file, blocked, 1)
				}
				code, out, errOut := e.validate(t, broken)
				if code != 1 {
					t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
				}
				if !strings.Contains(errOut, "  "+r.path+": ") || !strings.Contains(errOut, "1 problem(s)") {
					t.Fatalf("stderr does not name %s alone:\n%s", r.path, errOut)
				}
			})
		}
	}
}

// TestDeepParsesKeyMaterial: a reference that resolves to something serve
// cannot use fails --deep too, named by its field.
func TestDeepParsesKeyMaterial(t *testing.T) {
	e := newDeepEnv(t)
	tests := []struct {
		name  string
		file  string // overwritten with junk
		env   string
		field string
	}{
		{"bundle signing key", "signing.pem", "", "policy.bundles[1].signing.keys[0].public_key: no PEM block"},
		{"signing key is private", "signing.pem@issuer.pem", "", `PEM block "PRIVATE KEY" is not a public key`},
		{"store key", "store-key", "", "store.encryption.keys[0].secret"},
		{"issuer key", "issuer.pem", "", "issuer.keys[0].file"},
		{"sts private key in a file", "s2-sts.pem", "", "servers[1].credential_options[1].delegated.sts.private_key: file:"},
		{"sts private key in env", "", "DEEP_S5_KEY", "servers[4].credential.delegated.sts.private_key: env:DEEP_S5_KEY: not a usable private key"},
		{"cookie key", "cookie-key", "", "connect.cookie_key: file:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(tc.env, "junk")
			} else {
				dst, src, _ := strings.Cut(tc.file, "@")
				content := []byte("junk, not a key")
				if src != "" {
					content, _ = os.ReadFile(filepath.Join(e.dir, src))
				}
				p := filepath.Join(e.dir, dst)
				old, _ := os.ReadFile(p)
				t.Cleanup(func() { _ = os.WriteFile(p, old, 0o600) })
				if err := os.WriteFile(p, content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out, errOut := e.validate(t, e.docs[0])
			if code != 1 || !strings.Contains(errOut, tc.field) {
				t.Fatalf("exit %d, want 1 naming %q\n%s%s", code, tc.field, out, errOut)
			}
			if strings.Contains(errOut, "junk") || strings.Contains(errOut, "PRIVATE KEY-----") {
				t.Fatalf("key material printed:\n%s", errOut)
			}
		})
	}
}

// TestDeepWritesNothing: --deep creates no file or directory serve would.
func TestDeepWritesNothing(t *testing.T) {
	e := newDeepEnv(t)
	before := listTree(t, e.dir)
	if code, out, errOut := e.validate(t, e.docs[1]); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	after := slices.DeleteFunc(listTree(t, e.dir), func(p string) bool { return p == "config.yaml" })
	if !slices.Equal(before, after) {
		t.Fatalf("files changed:\nbefore %v\nafter  %v", before, after)
	}
}

func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}
