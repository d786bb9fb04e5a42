package policytest

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText prints the report like `opa test`: failed and errored tests
// (every test when verbose) grouped by file with their location, the
// explanation of each failure, a summary, and with coverage a per-file
// percentage (uncovered line ranges when verbose).
func (r *Report) WriteText(w io.Writer, verbose bool) error {
	ew := &errWriter{w: w}
	lastFile := ""
	dirty := false
	for i := range r.Tests {
		t := &r.Tests[i]
		if t.Outcome == Pass && !verbose {
			continue
		}
		if t.File != lastFile {
			if lastFile != "" {
				ew.printf("\n")
			}
			ew.printf("%s:\n", t.File)
			lastFile = t.File
		}
		dirty = true
		switch t.Outcome {
		case Skipped:
			ew.printf("%s: SKIPPED\n", t.FullName())
		default:
			ew.printf("%s: %s (%s) at %s:%d\n", t.FullName(), t.Outcome, t.Duration.Round(time.Microsecond), t.File, t.Row)
		}
		if t.Err != nil {
			ew.printf("%s", indent(t.Err.Error()))
		}
		if t.Explanation != "" {
			ew.printf("%s", indent(t.Explanation))
		}
		if out := strings.TrimSpace(t.Output); out != "" {
			ew.printf("  print output:\n%s", indent(indent(out)))
		}
	}
	if dirty {
		ew.printf("%s\n", strings.Repeat("-", 80))
	}
	pass, fail, errs, skip := r.Counts()
	total := len(r.Tests)
	if total == 0 {
		ew.printf("no tests ran\n")
	}
	for _, c := range []struct {
		label string
		n     int
	}{{"PASS", pass}, {"FAIL", fail}, {"ERROR", errs}, {"SKIPPED", skip}} {
		if c.n > 0 {
			ew.printf("%s: %d/%d\n", c.label, c.n, total)
		}
	}
	if c := r.Coverage; c != nil {
		ew.printf("%s\n", strings.Repeat("-", 80))
		ew.printf("coverage:\n")
		for _, f := range c.Files {
			ew.printf("  %-50s %6.1f%%  (%d/%d lines)\n", f.File, f.Percent, f.Covered, f.Covered+f.NotCovered)
			if verbose && len(f.Uncovered) > 0 {
				rs := make([]string, len(f.Uncovered))
				for i, lr := range f.Uncovered {
					rs[i] = lr.String()
				}
				ew.printf("      not covered: lines %s\n", strings.Join(rs, ", "))
			}
		}
		ew.printf("  %-50s %6.1f%%  (%d/%d lines)\n", "total (policy files)", c.Percent, c.Covered, c.Covered+c.NotCovered)
	}
	return ew.err
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
