package decisionlog

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

const exampleYAML = `
output: http
url: https://logs.example.com/logs
bearer_token: {env: DECISION_LOG_TOKEN}
timeout: 5s
flush_interval: 2s
max_batch_events: 500
max_batch_bytes: 524288
buffer_events: 20000
mask:
  - /input/mcp/arguments
  - /input/request/headers/x-api-key
labels: {env: prod, region: eu-west-1}
`

func TestConfigYAML(t *testing.T) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(exampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Output != OutputHTTP || c.URL != "https://logs.example.com/logs" || c.BearerToken == nil ||
		c.BearerToken.Env != "DECISION_LOG_TOKEN" || c.Timeout != 5*time.Second || c.FlushInterval != 2*time.Second ||
		c.MaxBatchEvents != 500 || c.MaxBatchBytes != 524288 || c.BufferEvents != 20000 || len(c.Mask) != 2 ||
		c.Labels["region"] != "eu-west-1" {
		t.Fatalf("decoded %+v", c)
	}
	// An inline token is refused by secret.Ref.
	if err := yaml.Unmarshal([]byte("output: http\nbearer_token: abc123"), &c); err == nil {
		t.Fatal("inline bearer_token accepted")
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Output: OutputFile, File: "x"}.withDefaults()
	if c.Timeout != DefaultTimeout || c.FlushInterval != DefaultFlushInterval || c.MaxBatchEvents != DefaultMaxBatchEvents ||
		c.MaxBatchBytes != DefaultMaxBatchBytes || c.BufferEvents != DefaultBufferEvents {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	httpOK := Config{Output: OutputHTTP, URL: "https://logs.example.com/logs"}
	with := func(c Config, f func(*Config)) Config { f(&c); return c }
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"http", httpOK, nil},
		{"http loopback", Config{Output: OutputHTTP, URL: "http://127.0.0.1:8181/logs"}, nil},
		{"file", Config{Output: OutputFile, File: "/var/log/d.log", Gzip: true, Mask: []string{"/input/x"}}, nil},
		{"missing output", Config{}, []string{"output: required (file or http)"}},
		{"unknown output", Config{Output: "kafka"}, []string{`output: unknown output "kafka"`}},
		{"file without path", Config{Output: OutputFile}, []string{"file: required with output file"}},
		{"file with http fields", Config{Output: OutputFile, File: "f", URL: "https://x", BearerToken: &secret.Ref{Env: "T"}},
			[]string{"url: not allowed with output file", "bearer_token: not allowed with output file"}},
		{"http without url", Config{Output: OutputHTTP}, []string{"url: required with output http"}},
		{"http non-loopback", Config{Output: OutputHTTP, URL: "http://logs.example.com/"}, []string{"url: must be https (or http on loopback)"}},
		{"relative url", Config{Output: OutputHTTP, URL: "/logs"}, []string{"url: must be an absolute URL"}},
		{"url with fragment", Config{Output: OutputHTTP, URL: "https://x/#f"}, []string{"url: must not contain a fragment"}},
		{"http with file fields", with(httpOK, func(c *Config) { c.File = "f"; c.Gzip = true }),
			[]string{"file: not allowed with output http", "gzip: not allowed with output http"}},
		{"bad token ref", with(httpOK, func(c *Config) { c.BearerToken = &secret.Ref{Env: "1BAD"} }), []string{"bearer_token: env"}},
		{"empty token ref", with(httpOK, func(c *Config) { c.BearerToken = &secret.Ref{} }), []string{"bearer_token: empty secret reference"}},
		{"numbers", with(httpOK, func(c *Config) {
			c.Timeout, c.FlushInterval, c.MaxBatchEvents, c.MaxBatchBytes, c.BufferEvents = -1, time.Millisecond, -1, 10, -5
		}), []string{"timeout: must not be negative", "flush_interval: must be at least 10ms", "max_batch_events: must not be negative",
			"max_batch_bytes: must be at least 1024", "buffer_events: must not be negative"}},
		{"too long", with(httpOK, func(c *Config) { c.Timeout, c.FlushInterval = time.Hour, 2*time.Hour }),
			[]string{"timeout: must be at most 5m", "flush_interval: must be at most 1h"}},
		{"masks", with(httpOK, func(c *Config) { c.Mask = []string{"/input/a", "input/b", "/labels/id", "/input/a"} }),
			[]string{"mask[1]: must be a JSON pointer", "mask[2]: must start with /input or /result", "mask[3]: duplicates mask[0]"}},
		{"labels", with(httpOK, func(c *Config) { c.Labels = map[string]string{"id": "x", "": "y", "ok": "a\nb"} }),
			[]string{"labels.id: reserved", "labels: label names must not be empty", "labels.ok: contains control characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("%d errors, want %d: %v", n, len(tt.want), err)
			}
		})
	}
}

func TestConfigValidateDoesNotEchoCredentials(t *testing.T) {
	err := Config{Output: OutputHTTP, URL: "https://user:hunter2pass@logs.example.com/"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "url: must not contain credentials") {
		t.Fatalf("Validate = %v", err)
	}
	if strings.Contains(err.Error(), "hunter2pass") {
		t.Fatalf("error echoes the password: %v", err)
	}
}
