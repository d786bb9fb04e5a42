package policy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// DataErrorsRule is the name of the rule a bundle defines, in any of its
// packages, to check its own data when it is loaded: a set (or array) of
// strings, one per problem, that reads data only (never input). A
// non-empty result refuses the whole bundle revision before it serves: at
// startup New fails, on a reload or download the previous policy keeps
// serving and the problems are reported in Status.
//
// It exists because a wrong type in data changes a policy's meaning
// silently ("read_only": "false" is truthy; "max_actors": "2" compares
// greater than every number). The shipped bundles define it with
// json.match_schema plus checks that data refer to things that exist.
const DataErrorsRule = "data_errors"

// maxDataErrors bounds the problems quoted in one error.
const maxDataErrors = 10

// checkDataErrors evaluates every DataErrorsRule of the compiled modules
// against the store and returns an error naming each reported problem, or
// an error if a rule cannot be evaluated or does not produce strings.
func checkDataErrors(ctx context.Context, compiler *ast.Compiler, store storage.Store) error {
	refs := map[string]string{} // rule ref -> file defining it
	for _, m := range compiler.Modules {
		for _, r := range m.Rules {
			path := r.Ref().GroundPrefix()
			if len(path) == len(m.Package.Path)+1 && path[len(path)-1].Equal(ast.StringTerm(DataErrorsRule)) {
				refs[path.String()] = r.Location.File
			}
		}
	}
	names := make([]string, 0, len(refs))
	for ref := range refs {
		names = append(names, ref)
	}
	sort.Strings(names)
	var errs []error
	for _, ref := range names {
		problems, err := evalDataErrors(ctx, compiler, store, ref)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("policy: %s (%s): %w", ref, refs[ref], err))
		case len(problems) > 0:
			more := ""
			if len(problems) > maxDataErrors {
				more = fmt.Sprintf("; and %d more", len(problems)-maxDataErrors)
				problems = problems[:maxDataErrors]
			}
			errs = append(errs, fmt.Errorf("policy: bundle data refused by %s (%s): %s%s", ref, refs[ref], strings.Join(problems, "; "), more))
		}
	}
	return errors.Join(errs...)
}

// evalDataErrors returns the sorted problems reported by one rule.
func evalDataErrors(ctx context.Context, compiler *ast.Compiler, store storage.Store, ref string) ([]string, error) {
	rs, err := rego.New(
		rego.Query(ref),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.GenerateJSON(identityJSON),
		rego.StrictBuiltinErrors(true), // a check that cannot run refuses the bundle
	).Eval(ctx)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // undefined: no problems (e.g. a rule whose every body failed)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("unexpected result type %T", rs[0].Expressions[0].Value)
	}
	var (
		out    []string
		badElt ast.Value
	)
	add := func(e *ast.Term) {
		s, ok := e.Value.(ast.String)
		if !ok {
			badElt = e.Value
			return
		}
		out = append(out, string(s))
	}
	switch v := t.Value.(type) {
	case ast.Set:
		v.Foreach(add)
	case *ast.Array:
		v.Foreach(add)
	default:
		return nil, fmt.Errorf("want a set of strings, got %s", ast.ValueName(v))
	}
	if badElt != nil {
		return nil, fmt.Errorf("want a set of strings, found %s element %s", ast.ValueName(badElt), badElt)
	}
	sort.Strings(out)
	return out, nil
}
