// Package policytest runs the Rego unit tests of OPA bundles with OPA's
// tester used as a library, the way `opa test -b DIR` does, and reports
// per-test outcomes, failure explanations and line coverage.
//
// Each path given to Run is one bundle: a directory in the OPA bundle layout
// (*.rego including *_test.rego, data.json/data.yaml, optional .manifest) or
// an `opa build` .tar.gz. Modules are parsed as Rego v1. Load and compile
// errors are reported as Errors, one "file:row:col: code: message" line each.
//
// Run has no shared state; concurrent calls are independent.
package policytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// DefaultTimeout bounds each test when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Options select what Run does. The zero value runs every test without
// coverage.
type Options struct {
	// Run is a regular expression; only tests whose name (package path
	// included, e.g. data.mcpauthz.policy_test.test_x) matches run.
	Run string
	// Coverage collects line coverage of the non-test files.
	Coverage bool
	// Verbose keeps the full note-and-failure trace of failed tests
	// instead of only their notes and failing expression.
	Verbose bool
	// Timeout bounds each test (default DefaultTimeout).
	Timeout time.Duration
	// Parallel is the number of tests run at once (default GOMAXPROCS).
	Parallel int
}

// Outcome of one test.
type Outcome string

// Test outcomes, spelled as `opa test` prints them.
const (
	Pass    Outcome = "PASS"
	Fail    Outcome = "FAIL"
	Error   Outcome = "ERROR"
	Skipped Outcome = "SKIPPED"
)

// Test is the result of one test rule.
type Test struct {
	Package  string // e.g. data.mcpauthz.policy_test
	Name     string // e.g. test_viewer_reads
	File     string
	Row      int
	Outcome  Outcome
	Err      error // set when Outcome is Error
	Duration time.Duration
	Output   string // print() output of the test
	// Explanation is set for failed tests: the trace of notes (trace(...))
	// and the failing expression, or with Options.Verbose the whole
	// note-and-fail lineage, with locations.
	Explanation string
}

// FullName is Package + "." + Name.
func (t *Test) FullName() string { return t.Package + "." + t.Name }

// Report is the outcome of Run.
type Report struct {
	Tests []Test // sorted by file, then row
	// Coverage is nil unless Options.Coverage was set.
	Coverage *Coverage
}

// Counts returns how many tests passed, failed, errored and were skipped.
func (r *Report) Counts() (pass, fail, errs, skip int) {
	for i := range r.Tests {
		switch r.Tests[i].Outcome {
		case Pass:
			pass++
		case Fail:
			fail++
		case Error:
			errs++
		case Skipped:
			skip++
		}
	}
	return
}

// OK reports whether at least one test ran and none failed or errored.
func (r *Report) OK() bool {
	pass, fail, errs, _ := r.Counts()
	return pass > 0 && fail == 0 && errs == 0
}

// Coverage is line coverage of the policy (non-test) files.
type Coverage struct {
	Files      []FileCoverage // sorted by file name
	Covered    int            // lines
	NotCovered int            // lines
	Percent    float64        // 0..100; 100 when there is nothing to cover
}

// FileCoverage is the coverage of one file.
type FileCoverage struct {
	File       string
	Covered    int
	NotCovered int
	Percent    float64
	// Uncovered lists the line ranges no test reached.
	Uncovered []LineRange
}

// LineRange is an inclusive range of lines.
type LineRange struct{ Start, End int }

func (l LineRange) String() string {
	if l.Start == l.End {
		return fmt.Sprint(l.Start)
	}
	return fmt.Sprintf("%d-%d", l.Start, l.End)
}

// Run loads each path as a bundle, compiles all of them together with
// their tests and runs the tests. A load or compile error is returned as
// Errors (or a plain error for I/O problems); test failures are not errors,
// they are in the Report.
func Run(ctx context.Context, paths []string, opts Options) (*Report, error) {
	if len(paths) == 0 {
		return nil, errors.New("policytest: no bundle given")
	}
	if opts.Run != "" {
		if _, err := regexp.Compile(opts.Run); err != nil {
			return nil, fmt.Errorf("policytest: run filter: %w", err)
		}
	}
	bundles := make(map[string]*bundle.Bundle, len(paths))
	modules := map[string]*ast.Module{}
	for _, p := range paths {
		b, err := loader.NewFileLoader().
			WithRegoVersion(ast.RegoV1).
			WithProcessAnnotation(true).
			WithSkipBundleVerification(true).
			AsBundle(p)
		if err != nil {
			return nil, regoErrors(fmt.Sprintf("policytest: load %s", p), err)
		}
		bundles[p] = b
		// Coverage is keyed by the file name in source locations.
		for _, m := range b.Modules {
			name := m.Path
			if m.Parsed != nil && m.Parsed.Package != nil && m.Parsed.Package.Location != nil {
				name = m.Parsed.Package.Location.File
			}
			modules[name] = m.Parsed
		}
	}
	store := inmem.NewWithOpts(inmem.OptRoundTripOnWrite(false))
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return nil, fmt.Errorf("policytest: %w", err)
	}
	defer store.Abort(ctx, txn)

	var cov *cover.Cover
	runner := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(store).
		SetBundles(bundles).
		CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		StackTraces(true).
		EnableTracing(true). // failures are explained from the trace
		SetTimeout(cmpOr(opts.Timeout, DefaultTimeout)).
		SetParallel(cmpOr(opts.Parallel, runtime.GOMAXPROCS(0))).
		Filter(opts.Run)
	if opts.Coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return nil, regoErrors("policytest: compile", err)
	}
	rep := &Report{}
	for r := range ch {
		rep.Tests = append(rep.Tests, convert(r, opts.Verbose))
	}
	sort.Slice(rep.Tests, func(i, j int) bool {
		a, b := &rep.Tests[i], &rep.Tests[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Row != b.Row {
			return a.Row < b.Row
		}
		return a.Name < b.Name
	})
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("policytest: %w", err)
	}
	if cov != nil {
		rep.Coverage = coverage(cov.Report(modules), modules)
	}
	return rep, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func convert(r *tester.Result, verbose bool) Test {
	t := Test{
		Package:  r.Package,
		Name:     r.Name,
		Duration: r.Duration,
		Output:   string(r.Output),
	}
	if r.Location != nil {
		t.File, t.Row = r.Location.File, r.Location.Row
	}
	switch {
	case r.Skip:
		t.Outcome = Skipped
	case r.Error != nil:
		t.Outcome, t.Err = Error, r.Error
	case r.Fail:
		t.Outcome = Fail
		t.Explanation = explain(r.Trace, verbose)
	default:
		t.Outcome = Pass
	}
	return t
}

// explain renders why a test failed: the notes it left and the last
// expression that failed, or the full note/fail lineage when verbose.
func explain(trace []*topdown.Event, verbose bool) string {
	var buf bytes.Buffer
	if verbose {
		topdown.PrettyTraceWithLocation(&buf, lineage.Filter(trace, func(e *topdown.Event) bool {
			return e.Op == topdown.NoteOp || e.Op == topdown.FailOp
		}))
		return buf.String()
	}
	if notes := lineage.Notes(trace); len(notes) > 0 {
		topdown.PrettyTraceWithLocation(&buf, notes)
	}
	for _, e := range slices.Backward(trace) {
		if e.Op != topdown.FailOp || e.Location == nil || e.QueryID == 0 {
			continue
		}
		if x, ok := e.Node.(*ast.Expr); ok {
			if _, every := x.Terms.(*ast.Every); every {
				continue // the failing expression inside the body is more useful
			}
		}
		fmt.Fprintf(&buf, "failed at %s:%d: %s\n", e.Location.File, e.Location.Row, strings.TrimSpace(string(e.Location.Text)))
		break
	}
	return buf.String()
}

// isTestFile reports whether a module file holds tests rather than policy.
func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

func coverage(r cover.Report, modules map[string]*ast.Module) *Coverage {
	c := &Coverage{}
	for name := range modules {
		if isTestFile(name) {
			continue
		}
		fr := r.Files[name]
		fc := FileCoverage{File: name, Percent: 100}
		if fr != nil {
			fc.Covered, fc.NotCovered = fr.CoveredLines, fr.NotCoveredLines
			if fc.Covered+fc.NotCovered > 0 {
				fc.Percent = fr.Coverage
			}
			fc.Uncovered = lineRanges(fr.NotCovered)
		}
		c.Covered += fc.Covered
		c.NotCovered += fc.NotCovered
		c.Files = append(c.Files, fc)
	}
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].File < c.Files[j].File })
	c.Percent = 100
	if total := c.Covered + c.NotCovered; total > 0 {
		c.Percent = 100 * float64(c.Covered) / float64(total)
	}
	return c
}

// lineRanges merges cover ranges into sorted, non-overlapping line ranges.
func lineRanges(rs []cover.Range) []LineRange {
	out := make([]LineRange, 0, len(rs))
	for _, r := range rs {
		out = append(out, LineRange{r.Start.Row, r.End.Row})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r.Start <= merged[n-1].End+1 {
			merged[n-1].End = max(merged[n-1].End, r.End)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}
