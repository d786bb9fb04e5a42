package policytest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/format"
)

const bundlesDir = "../../bundles"

// minCoverage is the line coverage every shipped bundle's tests must reach.
const minCoverage = 90.0

// TestShippedBundles runs the Rego tests of every bundle under bundles/
// (every directory holding a .manifest) and requires all of them to pass
// with at least minCoverage percent line coverage of the policy files.
func TestShippedBundles(t *testing.T) {
	entries, err := os.ReadDir(bundlesDir)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		dir := filepath.Join(bundlesDir, e.Name())
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, ".manifest")); err != nil {
			t.Errorf("%s: bundle directory without .manifest", dir)
			continue
		}
		found++
		t.Run(e.Name(), func(t *testing.T) {
			// -race and a busy machine slow Rego down: the timeout is a bound, not a target.
			rep, err := Run(context.Background(), []string{dir}, Options{Coverage: true, Timeout: time.Minute})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			var buf bytes.Buffer
			if err := rep.WriteText(&buf, true); err != nil {
				t.Fatal(err)
			}
			pass, fail, errs, skip := rep.Counts()
			if fail+errs+skip > 0 || pass < 15 {
				t.Errorf("pass=%d fail=%d error=%d skipped=%d (want >= 15 passing, nothing else)\n%s", pass, fail, errs, skip, buf.String())
			}
			if len(rep.Coverage.Files) == 0 {
				t.Fatalf("no policy files in coverage report")
			}
			for _, f := range rep.Coverage.Files {
				if f.Percent < minCoverage {
					t.Errorf("%s: coverage %.1f%% < %.0f%%, uncovered lines %v", f.File, f.Percent, minCoverage, f.Uncovered)
				}
			}
			t.Logf("%d tests, coverage %.1f%%", pass, rep.Coverage.Percent)
		})
	}
	if found < 4 {
		t.Errorf("found %d bundles under %s, want at least 4 (rbac, abac, guardrails, scopes)", found, bundlesDir)
	}
}

// TestShippedBundlesFormatted keeps every shipped .rego file as `opa fmt`
// writes it.
func TestShippedBundlesFormatted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(bundlesDir, "*", "*.rego"))
	if err != nil || len(files) < 8 {
		t.Fatalf("found %d .rego files (err %v), want at least 8", len(files), err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.Source(f, src)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if !bytes.Equal(out, src) {
			t.Errorf("%s is not formatted (run opa fmt -w)", f)
		}
	}
}
