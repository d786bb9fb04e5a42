package policytest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func bundleDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const policy = `package mcpauthz

decision := {"allow": true} if {
	input.ok
} else := {"allow": false, "reason": "nope"} if {
	input.never
} else := {"allow": false}
`

const tests = `package mcpauthz_test

test_allow if data.mcpauthz.decision.allow with input as {"ok": true}

test_fails if {
	trace("about to fail")
	data.mcpauthz.decision.allow with input as {}
}

todo_test_later if false

test_errors if {
	x := 1 / 0
	x > 0
}
`

func TestRunOutcomesAndCoverage(t *testing.T) {
	dir := bundleDir(t, map[string]string{"policy.rego": policy, "policy_test.rego": tests})
	rep, err := Run(context.Background(), []string{dir}, Options{Coverage: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Outcome{}
	for _, tc := range rep.Tests {
		got[tc.Name] = tc.Outcome
	}
	want := map[string]Outcome{"test_allow": Pass, "test_fails": Fail, "todo_test_later": Skipped, "test_errors": Error}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
	if p, f, e, s := rep.Counts(); p != 1 || f != 1 || e != 1 || s != 1 {
		t.Errorf("counts = %d %d %d %d", p, f, e, s)
	}
	if rep.OK() {
		t.Error("OK() with a failure")
	}
	for _, tc := range rep.Tests {
		switch tc.Name {
		case "test_fails":
			if tc.Row != 5 || !strings.HasSuffix(tc.File, "policy_test.rego") {
				t.Errorf("location = %s:%d", tc.File, tc.Row)
			}
			for _, w := range []string{"about to fail", "failed at ", "policy_test.rego:7", "data.mcpauthz.decision.allow with input as {}"} {
				if !strings.Contains(tc.Explanation, w) {
					t.Errorf("explanation lacks %q:\n%s", w, tc.Explanation)
				}
			}
		case "test_errors":
			if tc.Err == nil || !strings.Contains(tc.Err.Error(), "divide by zero") {
				t.Errorf("err = %v", tc.Err)
			}
		}
	}
	c := rep.Coverage
	if c == nil || len(c.Files) != 1 || !strings.HasSuffix(c.Files[0].File, "policy.rego") {
		t.Fatalf("coverage = %+v", c)
	}
	// The "nope" branch (lines 5-6) never ran.
	f := c.Files[0]
	if f.NotCovered == 0 || f.Percent >= 100 || f.Percent <= 0 || c.Percent != f.Percent {
		t.Errorf("file coverage = %+v, total %.1f", f, c.Percent)
	}
	if len(f.Uncovered) == 0 || f.Uncovered[0].Start > 6 || f.Uncovered[0].End < 5 {
		t.Errorf("uncovered = %v, want a range covering lines 5-6", f.Uncovered)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf, true); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"PASS: 1/4", "FAIL: 1/4", "ERROR: 1/4", "SKIPPED: 1/4", "test_allow: PASS", "not covered: lines "} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, buf.String())
		}
	}
}

func TestRunFilter(t *testing.T) {
	dir := bundleDir(t, map[string]string{"policy.rego": policy, "policy_test.rego": tests})
	rep, err := Run(context.Background(), []string{dir}, Options{Run: "test_allow$"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tests) != 1 || rep.Tests[0].Name != "test_allow" || !rep.OK() || rep.Coverage != nil {
		t.Errorf("report = %+v", rep)
	}
}

func TestRunErrors(t *testing.T) {
	parse := bundleDir(t, map[string]string{"policy.rego": "package mcpauthz\n\nx := [1,,2]\n"})
	compile := bundleDir(t, map[string]string{"policy.rego": "package mcpauthz\n\nx := y\n"})
	tests := []struct {
		name, dir, code string
		row, col        int
	}{
		{"parse", parse, "rego_parse_error", 3, 6},
		{"compile", compile, "rego_unsafe_var_error", 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), []string{tc.dir}, Options{})
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.Errs) == 0 {
				t.Fatalf("err = %v (%T), want *Errors", err, err)
			}
			e := errs.Errs[0]
			if e.Code != tc.code || e.Row != tc.row || !strings.HasSuffix(e.File, "policy.rego") {
				t.Errorf("error = %+v, want %s at row %d", e, tc.code, tc.row)
			}
			if e.Col == 0 {
				t.Errorf("no column in %+v", e)
			}
			if !strings.Contains(err.Error(), "policy.rego:") {
				t.Errorf("message lacks file:line:col: %v", err)
			}
		})
	}
	if _, err := Run(context.Background(), nil, Options{}); err == nil {
		t.Error("no paths: want error")
	}
	if _, err := Run(context.Background(), []string{parse}, Options{Run: "("}); err == nil || !strings.Contains(err.Error(), "run filter") {
		t.Errorf("bad regexp: err = %v", err)
	}
}
