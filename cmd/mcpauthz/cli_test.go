package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestEveryCommandHelp: every subcommand answers --help and -h with a
// usage that describes it, on stdout, and exit status 0; the top-level
// usage lists every subcommand.
func TestEveryCommandHelp(t *testing.T) {
	lines := [][]string{{"envoy", "generate"}, {"envoy", "validate"}}
	for _, c := range commands {
		lines = append(lines, []string{c.name})
		if !strings.Contains(usage, "mcpauthz "+c.name) {
			t.Errorf("the top-level usage does not list %q", c.name)
		}
	}
	for _, cmd := range lines {
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string(nil), cmd...), flag)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, out, errOut := runCmd(t, args...)
				if code != 0 || errOut != "" {
					t.Fatalf("exit %d, stderr %q", code, errOut)
				}
				if !strings.HasPrefix(out, "Usage:") || !strings.Contains(out, "mcpauthz "+strings.Join(cmd, " ")) {
					t.Fatalf("no usage line for %v:\n%s", cmd, out)
				}
				prose := 0
				for _, l := range strings.Split(out, "\n") {
					l = strings.TrimSpace(l)
					if len(l) > 30 && !strings.HasPrefix(l, "-") && !strings.HasPrefix(l, "Usage") && !strings.HasPrefix(l, "mcpauthz ") && !strings.HasPrefix(l, "[") {
						prose++
					}
				}
				if prose < 2 {
					t.Errorf("the usage does not describe the command (%d lines of prose):\n%s", prose, out)
				}
			})
		}
	}
	for _, top := range []string{"help", "--help", "-h"} {
		if code, out, _ := runCmd(t, top); code != 0 || !strings.HasPrefix(out, "mcpauthz — ") {
			t.Errorf("mcpauthz %s: exit %d\n%s", top, code, out)
		}
	}
}

// TestUsageErrorsExit2: a usage mistake (not a request for help) is exit
// status 2 with the usage on stderr.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"demo", "extra"}, {"serve", "--nope"}, {"version", "x"}, {"envoy", "generate", "--nope"}, {"test"}} {
		code, out, errOut := runCmd(t, args...)
		if code != 2 || !strings.Contains(errOut, "Usage:") || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

func TestVersionText(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/mcpauthz/mcpauthz", Version: "v0.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            string
	}{
		{"module build", "", "", bi, "mcpauthz v0.4.0\n  commit 0123456789abcdef 2026-12-01T10:00:00Z (modified)\n  go     go1.26.8 " + platform + "\n"},
		{"link-time version wins", "v1.0.0", "", bi, "mcpauthz v1.0.0\n  commit 0123456789abcdef 2026-12-01T10:00:00Z (modified)\n"},
		{"container build: commit from the linker", "v1.0.0", "feedbeef", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "mcpauthz v1.0.0\n  commit feedbeef\n"},
		{"no build info", "", "", nil, "mcpauthz (unknown)\n  commit unknown (built without version control information)\n  go     " + runtime.Version()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionText(tc.version, tc.commit, tc.bi); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got\n%s\nwant prefix\n%s", got, tc.want)
			}
		})
	}
}

// TestLogFormat: every command logs JSON lines, and durations carry their
// unit in the key.
func TestLogFormat(t *testing.T) {
	var b strings.Builder
	log, err := newLogger(&b, "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("policy loaded", "duration", 1500*time.Microsecond, "retry_in", 2*time.Second, "timeout_ms", 3*time.Millisecond, "n", 4)
	var rec map[string]any
	if err := json.Unmarshal([]byte(b.String()), &rec); err != nil {
		t.Fatalf("not a JSON line: %q", b.String())
	}
	want := map[string]any{"duration_ms": 1.5, "retry_in_ms": 2000.0, "timeout_ms": 3.0, "n": 4.0, "msg": "policy loaded"}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, rec[k], v, b.String())
		}
	}
	for _, k := range []string{"duration", "retry_in"} {
		if _, ok := rec[k]; ok {
			t.Errorf("%s logged without its unit", k)
		}
	}
	if _, err := newLogger(&b, "loud"); err == nil {
		t.Error("a bad level was accepted")
	}
}
