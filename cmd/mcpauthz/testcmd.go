package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/mcpauthz/mcpauthz/policy/policytest"
)

const testUsage = `Usage: mcpauthz test [--coverage] [--threshold N] [--run REGEX] [-v] DIR...

Runs the Rego unit tests (*_test.rego, rules named test_*) of each bundle
DIR (a directory in the OPA bundle layout or an opa build .tar.gz), like
'opa test -b DIR'. Failed tests are printed with their location and the
notes and failing expression that explain them; -v prints every test and
full failure traces. Exit status 1 when a test fails or errors, when no
test ran, or when coverage is below --threshold; 2 on usage errors.

Flags (may follow DIR):
`

func cmdTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("test", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = printUsage(fl, stderr, testUsage)
	coverage := fl.Bool("coverage", false, "report line coverage of the policy (non-test) files")
	threshold := fl.Float64("threshold", 0, "fail when total coverage is below N percent (implies --coverage)")
	run := fl.String("run", "", "run only tests whose full name (data.pkg.test_x) matches REGEX")
	verbose := fl.Bool("v", false, "print every test, full failure traces and uncovered lines")
	dirs, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	if len(dirs) == 0 {
		fmt.Fprintln(stderr, "mcpauthz test: at least one bundle DIR is required")
		fl.Usage()
		return flag.ErrHelp
	}
	if *threshold < 0 || *threshold > 100 {
		return fmt.Errorf("--threshold must be between 0 and 100, got %g", *threshold)
	}
	rep, err := policytest.Run(ctx, dirs, policytest.Options{
		Run:      *run,
		Coverage: *coverage || *threshold > 0,
		Verbose:  *verbose,
	})
	if err != nil {
		return err
	}
	if err := rep.WriteText(stdout, *verbose); err != nil {
		return err
	}
	_, fail, errs, _ := rep.Counts()
	switch {
	case fail+errs > 0:
		return fmt.Errorf("%d of %d tests failed", fail+errs, len(rep.Tests))
	case len(rep.Tests) == 0:
		if *run != "" {
			return fmt.Errorf("no tests match --run %q", *run)
		}
		return errors.New("no tests found (test rules are named test_* in *_test.rego files)")
	case *threshold > 0 && rep.Coverage.Percent < *threshold:
		return fmt.Errorf("coverage %.1f%% is below --threshold %g%%", rep.Coverage.Percent, *threshold)
	}
	return nil
}

// parseInterspersed parses flags that may appear before, between or after
// positional arguments; "--" ends flag parsing.
func parseInterspersed(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			return nil, flag.ErrHelp // the flag package printed the problem and the usage
		}
		rest := fl.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag.Parse stops at the first non-flag or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if strings.HasPrefix(rest[0], "-") && rest[0] != "-" {
			return nil, fmt.Errorf("flag parsing stopped at %q", rest[0])
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
