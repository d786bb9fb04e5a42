package policy

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := []BundleSource{{Path: "bundles/rbac"}}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings; nil means valid
	}{
		{"minimal", Config{Bundles: ok}, nil},
		{"full", Config{Bundles: []BundleSource{{Path: "a"}, {Path: "b.tar.gz"}}, Query: "data.envoy.authz.allow", PollInterval: time.Second}, nil},
		{"no bundles", Config{}, []string{"bundles: at least one bundle is required"}},
		{"empty path", Config{Bundles: []BundleSource{{Path: "a"}, {Path: " "}}}, []string{"bundles[1].path: must not be empty"}},
		{"duplicate path", Config{Bundles: []BundleSource{{Path: "a"}, {Path: "./a"}}}, []string{"bundles[1].path: duplicates bundles[0].path"}},
		{"query not ref", Config{Bundles: ok, Query: "1 + 1"}, []string{"query: "}},
		{"query not data", Config{Bundles: ok, Query: "input.x"}, []string{"query: must be a reference into data"}},
		{"query bare data", Config{Bundles: ok, Query: "data"}, []string{"query: must be a reference into data"}},
		{"query with var", Config{Bundles: ok, Query: "data.x[y]"}, []string{"query: must not contain variables"}},
		{"negative poll", Config{Bundles: ok, PollInterval: -time.Second}, []string{"poll_interval: must not be negative"}},
		{"tiny poll", Config{Bundles: ok, PollInterval: time.Millisecond}, []string{"poll_interval: must be at least 100ms"}},
		{"all at once", Config{Bundles: []BundleSource{{}}, Query: "input", PollInterval: -1},
			[]string{"bundles[0].path:", "query:", "poll_interval:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := len(strings.Split(err.Error(), "\n")); got != len(tc.want) {
				t.Errorf("got %d joined errors, want %d: %v", got, len(tc.want), err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Bundles: []BundleSource{{Path: "x"}}}.withDefaults()
	if c.Query != DefaultQuery || c.PollInterval != DefaultPollInterval {
		t.Fatalf("defaults = %+v", c)
	}
}
