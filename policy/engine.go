package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrNotReady is returned by Evaluate when no policy has been loaded.
var ErrNotReady = errors.New("policy: no policy loaded")

// snapshot is one immutable, fully prepared policy. It is published behind a
// single atomic pointer; Evaluate loads it once per call.
type snapshot struct {
	pq       rego.PreparedEvalQuery
	revision string
	sum      [sha256.Size]byte
	use      inputUse // input parts the policy may read
	// decisions memoizes decisions; nil when disabled or when the policy
	// is nondeterministic or reads input.request.
	decisions *decisionCache
}

// Status reports the engine's loading state.
type Status struct {
	Revision        string
	Ready           bool // a policy is serving
	LastError       string
	LastLoad        time.Time // last successful (re)compilation
	LastAttempt     time.Time
	Loads, Failures uint64
}

// Engine evaluates MCP authorization decisions with OPA.
//
// Engine is safe for concurrent use: Evaluate may run from any number of
// goroutines while Run/Reload swap policies; every evaluation sees exactly one
// whole policy version.
type Engine struct {
	cfg Config
	log *slog.Logger

	snap atomic.Pointer[snapshot]

	reloadMu sync.Mutex // serializes Reload
	compiles atomic.Uint64

	statusMu sync.Mutex
	status   Status
}

// New loads, compiles and prepares the configured bundles. It fails if the
// configuration is invalid or the initial bundles do not compile.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("policy: invalid config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg.withDefaults(), log: log.With("component", "policy")}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Status returns a copy of the current loading state.
func (e *Engine) Status() Status {
	e.statusMu.Lock()
	s := e.status
	e.statusMu.Unlock()
	if cur := e.snap.Load(); cur != nil {
		s.Ready = true
		s.Revision = cur.revision
	}
	return s
}

// Reload re-reads all bundles now. If their content is unchanged the prepared
// query is kept; otherwise the bundles are compiled and prepared and the new
// policy replaces the old one atomically. On error the previous policy keeps
// serving, the error is recorded in Status and returned.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	start := time.Now()
	next, changed, err := e.load(ctx)
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	e.status.LastAttempt = start
	if err != nil {
		e.status.Failures++
		e.status.LastError = err.Error()
		e.log.Error("policy reload failed; previous policy keeps serving",
			"error", err, "serving", e.snap.Load() != nil)
		return err
	}
	e.status.LastError = ""
	if !changed {
		return nil
	}
	e.snap.Store(next)
	e.status.Loads++
	e.status.LastLoad = time.Now()
	e.log.Info("policy loaded", "revision", next.revision, "duration", time.Since(start))
	return nil
}

// load reads the bundles and, if their content changed, builds a new snapshot.
func (e *Engine) load(ctx context.Context) (*snapshot, bool, error) {
	raws := make([]*rawBundle, 0, len(e.cfg.Bundles))
	h := sha256.New()
	for _, src := range e.cfg.Bundles {
		rb, err := readSource(ctx, src.Path)
		if err != nil {
			return nil, false, fmt.Errorf("policy: %w", err)
		}
		raws = append(raws, rb)
		h.Write([]byte(src.Path))
		h.Write(rb.sum[:])
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if cur := e.snap.Load(); cur != nil && bytes.Equal(cur.sum[:], sum[:]) {
		return cur, false, nil
	}
	snap, err := e.build(ctx, raws)
	if err != nil {
		return nil, false, err
	}
	snap.sum = sum
	return snap, true, nil
}

// evalNoMetrics skips per-evaluation metric timers (a measurable share of
// allocations); it is an immutable option shared by all evaluations.
var evalNoMetrics = rego.EvalMetrics(metrics.NoOp())

// identityJSON makes rego results carry the *ast.Term itself, so decisions
// are decoded from the AST without a JSON conversion.
func identityJSON(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

func (e *Engine) build(ctx context.Context, raws []*rawBundle) (*snapshot, error) {
	e.compiles.Add(1)
	bundles := make([]*bundle.Bundle, 0, len(raws))
	revs := make([]string, 0, len(raws))
	for _, rb := range raws {
		b, err := rb.parse()
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		bundles = append(bundles, b)
		rev := b.Manifest.Revision
		if rev == "" {
			rev = rb.shortSum()
		}
		revs = append(revs, rev)
	}
	merged, err := bundle.MergeWithRegoVersion(bundles, ast.RegoV1, true)
	if err != nil {
		return nil, fmt.Errorf("policy: merge bundles: %w", err)
	}
	modules := make(map[string]*ast.Module, len(merged.Modules))
	for _, m := range merged.Modules {
		modules[m.Path] = m.Parsed
	}
	compiler := ast.NewCompiler().
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("policy: compile: %w", compiler.Errors)
	}
	store := inmem.NewFromObjectWithOpts(merged.Data,
		inmem.OptRoundTripOnWrite(false),
		inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.Query(e.cfg.Query),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.GenerateJSON(identityJSON),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare %s: %w", e.cfg.Query, err)
	}
	snap := &snapshot{pq: pq, revision: strings.Join(revs, ","), use: analyzeInputUse(compiler.Modules)}
	if e.cfg.DecisionCacheSize > 0 && !snap.use.nondeterministic && !snap.use.request {
		if snap.decisions, err = newDecisionCache(e.cfg.DecisionCacheSize); err != nil {
			return nil, fmt.Errorf("policy: decision cache: %w", err)
		}
	}
	return snap, nil
}

// Evaluate runs the policy for one request. Any error means the request
// must be denied. ctx bounds the evaluation.
func (e *Engine) Evaluate(ctx context.Context, in *Input) (Decision, error) {
	snap := e.snap.Load()
	if snap == nil {
		return Decision{}, ErrNotReady
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, fmt.Errorf("policy: evaluate: %w", err)
	}
	if in == nil {
		return Decision{}, errors.New("policy: evaluate: nil input")
	}
	var cacheKey string
	if snap.decisions != nil {
		var ok bool
		if cacheKey, ok = in.cacheKey(snap.use); ok {
			if d, hit := snap.decisions.get(cacheKey); hit {
				return d, nil
			}
		}
	}
	input, err := in.toValue(snap.use)
	if err != nil {
		return Decision{}, err
	}

	// Cancellation without a goroutine per evaluation.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	rs, err := snap.pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel), evalNoMetrics)
	stop()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return Decision{}, fmt.Errorf("policy: evaluate: %w", cerr)
		}
		return Decision{}, fmt.Errorf("policy: evaluate: %w", err)
	}
	var d Decision
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		d = Decision{Reason: ReasonUndefined}
	case len(rs) > 1:
		return Decision{}, fmt.Errorf("%w: query produced %d results, want 1", ErrBadDecision, len(rs))
	default:
		t, ok := rs[0].Expressions[0].Value.(*ast.Term)
		if !ok {
			return Decision{}, fmt.Errorf("%w: unexpected result type %T", ErrBadDecision, rs[0].Expressions[0].Value)
		}
		if d, err = decodeDecision(t.Value); err != nil {
			return Decision{}, err
		}
	}
	d.Revision = snap.revision
	if cacheKey != "" {
		snap.decisions.put(cacheKey, d)
	}
	return d, nil
}
