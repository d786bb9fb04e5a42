package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Explanation is one evaluation laid open, for policy authors and offline
// tooling (`mcpauthz eval`).
type Explanation struct {
	// Input is the whole input document as the policy sees it, with no
	// part pruned (claims, arguments, headers and labels are always
	// present), as JSON-compatible Go values.
	Input any
	// Decision is the decoded result, exactly as Evaluate would return it.
	Decision Decision
	// Trace is OPA's pretty trace with source locations; empty unless
	// requested.
	Trace string
}

// Explain evaluates the current policy for in like Evaluate, but never
// consults or fills the decision cache, always converts the full input, and
// optionally records an evaluation trace. It is much slower than Evaluate
// and is not meant for the request path. Safe for concurrent use.
func (e *Engine) Explain(ctx context.Context, in *Input, trace bool) (Explanation, error) {
	snap := e.snap.Load()
	if snap == nil {
		return Explanation{}, ErrNotReady
	}
	if in == nil {
		return Explanation{}, errors.New("policy: explain: nil input")
	}
	if err := ctx.Err(); err != nil {
		return Explanation{}, fmt.Errorf("policy: explain: %w", err)
	}
	v, err := in.toValue(allInput)
	if err != nil {
		return Explanation{}, err
	}
	doc, err := ast.JSON(v)
	if err != nil {
		return Explanation{}, fmt.Errorf("policy: explain: input to JSON: %w", err)
	}
	ex := Explanation{Input: doc}

	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	opts := []rego.EvalOption{rego.EvalParsedInput(v), rego.EvalExternalCancel(cancel)}
	var tracer *topdown.BufferTracer
	if trace {
		tracer = topdown.NewBufferTracer()
		opts = append(opts, rego.EvalQueryTracer(tracer))
	}
	rs, err := snap.pq.Eval(ctx, opts...)
	if tracer != nil {
		var buf bytes.Buffer
		topdown.PrettyTraceWithLocation(&buf, *tracer)
		ex.Trace = buf.String()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return ex, fmt.Errorf("policy: explain: %w", cerr)
		}
		return ex, fmt.Errorf("policy: explain: %w", err)
	}
	if ex.Decision, err = decodeResultSet(rs); err != nil {
		return ex, err
	}
	ex.Decision.Revision = snap.revision
	return ex, nil
}

// decodeResultSet turns the prepared query's result into a Decision, with
// the same rules as Evaluate: no result is ReasonUndefined, more than one
// is an error.
func decodeResultSet(rs rego.ResultSet) (Decision, error) {
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return Decision{Reason: ReasonUndefined}, nil
	case len(rs) > 1:
		return Decision{}, fmt.Errorf("%w: query produced %d results, want 1", ErrBadDecision, len(rs))
	}
	switch t := rs[0].Expressions[0].Value.(type) {
	case *ast.Term:
		return decodeDecision(t.Value)
	default:
		// A prepared query built without identityJSON yields plain Go
		// values; convert them.
		v, err := ast.InterfaceToValue(t)
		if err != nil {
			return Decision{}, fmt.Errorf("%w: unexpected result type %T", ErrBadDecision, t)
		}
		return decodeDecision(v)
	}
}
