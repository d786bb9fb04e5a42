package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type holder struct {
	Secret Ref `yaml:"secret"`
}

func TestUnmarshalYAML(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Ref
		wantErr []string // substrings of the error; nil means success
		notIn   string   // must not appear in the error
	}{
		{name: "env", in: "secret: {env: API_KEY}", want: Ref{Env: "API_KEY"}},
		{name: "file", in: "secret:\n  file: /run/secrets/key\n", want: Ref{File: "/run/secrets/key"}},
		{name: "inline scalar refused", in: "secret: sk_live_abc123", wantErr: []string{"line 1", "inline secrets are not allowed", "{env: NAME} or {file: PATH}"}, notIn: "sk_live_abc123"},
		{name: "inline quoted refused", in: "\n\nsecret: \"hunter2\"", wantErr: []string{"line 3", "inline secrets"}, notIn: "hunter2"},
		{name: "both refused", in: "secret: {env: A, file: /b}", wantErr: []string{"line 1", "both env and file"}},
		{name: "unknown key refused", in: "secret:\n  env: A\n  vault: x\n", wantErr: []string{"line 3", "unknown key"}},
		{name: "braced secret not echoed", in: "secret: {sk_live_abc123}", wantErr: []string{"unknown key"}, notIn: "sk_live_abc123"},
		{name: "empty mapping", in: "secret: {}", wantErr: []string{"line 1", "empty secret reference"}},
		{name: "empty env value", in: "secret: {env: \"\"}", wantErr: []string{"env must not be empty"}},
		{name: "non-string value", in: "secret: {env: 12}", wantErr: []string{"env must be a string"}},
		{name: "bad env name", in: "secret: {env: \"A-B\"}", wantErr: []string{"not a valid environment variable name"}},
		{name: "duplicate key", in: "secret: {env: A, env: B}", wantErr: []string{"line 1"}},
		{name: "sequence refused", in: "secret: [a]", wantErr: []string{"must be a mapping"}, notIn: "[a]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h holder
			err := yaml.Unmarshal([]byte(tt.in), &h)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if h.Secret != tt.want {
					t.Fatalf("got %+v, want %+v", h.Secret, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error, got %+v", h.Secret)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.notIn != "" && strings.Contains(err.Error(), tt.notIn) {
				t.Errorf("error %q leaks %q", err, tt.notIn)
			}
		})
	}
}

func TestUnmarshalYAMLNull(t *testing.T) {
	// yaml.v3 does not call the unmarshaler for a null value: the Ref stays
	// zero and Validate reports it.
	var h holder
	if err := yaml.Unmarshal([]byte("secret:\n"), &h); err != nil {
		t.Fatal(err)
	}
	if !h.Secret.IsZero() {
		t.Fatalf("want zero Ref, got %+v", h.Secret)
	}
	if err := h.Secret.Validate(); err == nil || !strings.Contains(err.Error(), "empty secret reference") {
		t.Fatalf("Validate() = %v", err)
	}
	// Called directly on a null node it refuses too.
	var r Ref
	err := r.UnmarshalYAML(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: 7})
	if err == nil || !strings.Contains(err.Error(), "line 7: empty secret reference") {
		t.Fatalf("UnmarshalYAML(null) = %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		ref  Ref
		err  string
	}{
		{"env ok", Ref{Env: "_A1"}, ""},
		{"file ok", Ref{File: "secrets/key"}, ""},
		{"zero", Ref{}, "empty secret reference"},
		{"both", Ref{Env: "A", File: "/b"}, "exactly one"},
		{"env leading digit", Ref{Env: "1A"}, "not a valid environment variable name"},
		{"env with equals", Ref{Env: "A=B"}, "not a valid environment variable name"},
		{"env too long", Ref{Env: strings.Repeat("A", 257)}, "not a valid environment variable name"},
		{"file newline", Ref{File: "/a\nb"}, "control characters"},
		{"file nul", Ref{File: "/a\x00b"}, "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ref.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.err)
			}
			if !strings.HasPrefix(err.Error(), "secret: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("MCPAUTHZ_TEST_SET", "s3cr3t-env")
	t.Setenv("MCPAUTHZ_TEST_EMPTY", "")

	tests := []struct {
		name  string
		ref   Ref
		want  string
		err   string // substring
		notIn string
	}{
		{name: "env", ref: Ref{Env: "MCPAUTHZ_TEST_SET"}, want: "s3cr3t-env"},
		{name: "env missing", ref: Ref{Env: "MCPAUTHZ_TEST_UNSET_XYZ"}, err: `env var "MCPAUTHZ_TEST_UNSET_XYZ" is not set`},
		{name: "env empty", ref: Ref{Env: "MCPAUTHZ_TEST_EMPTY"}, err: `env var "MCPAUTHZ_TEST_EMPTY" is empty`},
		{name: "file newline trimmed", ref: Ref{File: write("a", "s3cr3t-file\n")}, want: "s3cr3t-file"},
		{name: "file crlf trimmed", ref: Ref{File: write("b", "s3cr3t-file\r\n")}, want: "s3cr3t-file"},
		{name: "file no newline", ref: Ref{File: write("c", "x y")}, want: "x y"},
		{name: "file inner newline kept", ref: Ref{File: write("d", "l1\nl2\n")}, want: "l1\nl2"},
		{name: "file leading space kept", ref: Ref{File: write("e", " pad \n")}, want: " pad "},
		{name: "file missing", ref: Ref{File: filepath.Join(dir, "nope")}, err: filepath.Join(dir, "nope")},
		{name: "file empty", ref: Ref{File: write("f", "\n")}, err: "is empty"},
		{name: "file max size ok", ref: Ref{File: write("g", strings.Repeat("k", MaxFileSize-1)+"\n")}, want: strings.Repeat("k", MaxFileSize-1)},
		{name: "file too large", ref: Ref{File: write("h", strings.Repeat("k", MaxFileSize+2))}, err: "exceeds 65536 bytes", notIn: "kkkk"},
		{name: "file is dir", ref: Ref{File: dir}, err: dir},
		{name: "invalid ref", ref: Ref{}, err: "empty secret reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.ref.Resolve()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got := v.Reveal(); got != tt.want {
					t.Fatalf("Reveal() = %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q", tt.err)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %q does not contain %q", err, tt.err)
			}
			if tt.notIn != "" && strings.Contains(err.Error(), tt.notIn) {
				t.Fatalf("error leaks content")
			}
		})
	}
}

func TestRefString(t *testing.T) {
	for ref, want := range map[Ref]string{
		{Env: "A"}:            "env:A",
		{File: "/x"}:          "file:/x",
		{}:                    "<none>",
		{Env: "A", File: "B"}: "<invalid>",
	} {
		if got := ref.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", ref, got, want)
		}
	}
}

type wrapper struct {
	Exported Value
	hidden   Value
	Ptr      *Value
}

func TestValueRedaction(t *testing.T) {
	const s = "sk_live_TOPSECRET"
	v := NewValue(s)
	if v.Reveal() != s {
		t.Fatalf("Reveal() = %q", v.Reveal())
	}
	w := wrapper{Exported: v, hidden: v, Ptr: &v}

	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10s", "%T"} {
		outputs["value "+verb] = fmt.Sprintf(verb, v)
		outputs["wrapper "+verb] = fmt.Sprintf(verb, w)
		outputs["ptr "+verb] = fmt.Sprintf(verb, &v)
	}
	outputs["Sprint"] = fmt.Sprint(v, w)
	outputs["String"] = v.String()
	outputs["GoString"] = v.GoString()

	j, err := json.Marshal(map[string]any{"v": v, "w": w})
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(j)
	tx, _ := v.MarshalText()
	outputs["text"] = string(tx)
	y, err := yaml.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	outputs["yaml"] = string(y)

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("m", "v", v, "w", w, slog.Any("p", &v))
	outputs["slog json"] = buf.String()
	buf.Reset()
	slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v)
	outputs["slog text"] = buf.String()

	hexSecret := fmt.Sprintf("%x", s)
	for name, out := range outputs {
		if strings.Contains(out, s) || strings.Contains(out, "TOPSECRET") || strings.Contains(strings.ToLower(out), hexSecret) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	for _, name := range []string{"value %v", "value %#v", "value %+v", "String", "GoString", "text"} {
		if outputs[name] != Redacted {
			t.Errorf("%s = %q, want %q", name, outputs[name], Redacted)
		}
	}
	if want := `{"v":"[redacted]","w":{"Exported":"[redacted]","Ptr":"[redacted]"}}`; outputs["json"] != want {
		t.Errorf("json = %s, want %s", outputs["json"], want)
	}
	if !strings.Contains(outputs["slog json"], `"v":"[redacted]"`) || !strings.Contains(outputs["slog json"], `"p":"[redacted]"`) {
		t.Errorf("slog json = %s", outputs["slog json"])
	}
	if !strings.Contains(outputs["slog text"], "v=[redacted]") {
		t.Errorf("slog text = %s", outputs["slog text"])
	}
}

func TestZeroValue(t *testing.T) {
	var v Value
	if v.Reveal() != "" || !v.IsZero() || fmt.Sprint(v) != Redacted {
		t.Fatalf("zero Value: Reveal=%q IsZero=%v Sprint=%q", v.Reveal(), v.IsZero(), fmt.Sprint(v))
	}
	if NewValue("x").IsZero() {
		t.Fatal("NewValue(x).IsZero() = true")
	}
}
