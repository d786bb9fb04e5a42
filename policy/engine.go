package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
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
	pq       rego.PreparedEvalQuery // plain rego: explain, and the reference for fast
	fast     *fastQuery             // the evaluation path (fast.go)
	revision string
	revs     []string // per source, in config order
	sum      [sha256.Size]byte
	use      inputUse // input parts the policy may read
	// decisions memoizes decisions; nil when disabled or when the policy
	// is nondeterministic or reads input.request.
	decisions *decisionCache
}

// Status reports the engine's loading state.
type Status struct {
	Revision string // per-source revisions joined with ","
	Ready    bool   // a policy is serving
	// LastError is non-empty while some source is failing: the last error
	// of reloading the path sources and of each failing url source, joined
	// with "; ". It clears when the failing source succeeds again.
	LastError       string
	LastLoad        time.Time // last successful (re)compilation
	LastAttempt     time.Time
	Loads, Failures uint64
	Sources         []SourceStatus // in config order
}

// Values of SourceStatus.ActivatedFrom.
const (
	FromPath      = "path"      // read from a local path
	FromDownload  = "download"  // downloaded from the bundle server
	FromPersisted = "persisted" // read from persist_dir at startup
)

// SourceStatus reports one bundle source.
type SourceStatus struct {
	Name string
	URL  string // url sources: without user info; a query string shows as "?..."
	Path string // path sources
	// Revision of the serving bundle of this source (its manifest revision
	// or a content hash).
	Revision    string
	ETag        string    // url sources: ETag of the serving bundle
	LastSuccess time.Time // last attempt that ended with this source's bundle current
	LastAttempt time.Time
	LastError   string // empty when the last attempt succeeded
	// Persisted reports that the serving bundle is stored in persist_dir.
	Persisted    bool
	PersistError string // last failure to persist (the bundle still serves)
	// ActivatedFrom is FromPath, FromDownload or FromPersisted.
	ActivatedFrom string
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

	sources []*source
	remotes []*source                  // the url sources
	randN   func(n int64) int64        // jitter source; rand.Int64N
	client  func(*source) *http.Client // builds a source's HTTP client

	reloadMu sync.Mutex // serializes loading; guards source.active/etag
	compiles atomic.Uint64
	// retireAfter is how long a replaced snapshot's decision cache stays
	// open (retireGrace; tests shorten it).
	retireAfter time.Duration

	statusMu  sync.Mutex // guards status, reloadErr and every source.st
	status    Status
	reloadErr string // last error of Reload (path sources)
}

// source is one configured bundle source.
type source struct {
	cfg BundleSource
	vc  *bundle.VerificationConfig // nil: no signature required

	// url sources
	client *http.Client
	active *rawBundle // the serving bundle; guarded by Engine.reloadMu
	etag   string     // its ETag; guarded by Engine.reloadMu
	// persistedSum is the content hash of the persisted copy; guarded by
	// Engine.reloadMu (and written by New before any concurrency).
	persistedSum [sha256.Size]byte
	// failures counts consecutive failed polls; owned by the poll loop
	// (and New, before Run starts).
	failures int

	st SourceStatus // guarded by Engine.statusMu
}

func (s *source) remote() bool { return s.cfg.URL != "" }

// candidate is a bundle of one url source waiting to be activated.
type candidate struct {
	src  *source
	rb   *rawBundle
	raw  []byte // the tarball as downloaded, for persisting
	etag string
	from string // FromDownload or FromPersisted
	// fallback is the persisted bundle to try at startup when this
	// downloaded one does not compile.
	fallback *candidate
}

// New validates cfg, reads the path sources, fetches the url sources and
// compiles and prepares everything. It fails if the configuration is invalid
// or the initial bundles cannot be loaded or do not compile.
//
// A url source is downloaded once; if that fails and a verified persisted
// copy exists (persist: true), the engine starts from the copy. Without a
// copy New retries with backoff until Config.StartupTimeout (default 30s) and
// then fails. If a downloaded bundle does not compile but a persisted copy
// does, New starts from the copy and records the error in Status.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("policy: invalid config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg.withDefaults(), log: log.With("component", "policy"), randN: rand.Int64N, retireAfter: retireGrace}
	e.client = e.newClient
	if err := e.init(); err != nil {
		return nil, err
	}
	if err := e.start(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// init builds the sources (reading signing keys) and the persist dir.
func (e *Engine) init() error {
	persist := false
	for _, bc := range e.cfg.Bundles {
		vc, err := verificationConfig(bc.Signing)
		if err != nil {
			return fmt.Errorf("policy: bundle %s: %w", bc.Name, err)
		}
		s := &source{cfg: bc, vc: vc, st: SourceStatus{Name: bc.Name, Path: bc.Path}}
		if s.remote() {
			s.st.URL = displayURL(bc.URL)
			e.remotes = append(e.remotes, s)
			persist = persist || bc.Persist
		} else {
			s.st.ActivatedFrom = FromPath
		}
		e.sources = append(e.sources, s)
	}
	if persist {
		if err := os.MkdirAll(e.cfg.PersistDir, 0o700); err != nil {
			return fmt.Errorf("policy: persist_dir: %w", err)
		}
	}
	return nil
}

// start performs the initial load.
func (e *Engine) start(ctx context.Context) error {
	if len(e.remotes) == 0 {
		return e.Reload(ctx)
	}
	for _, s := range e.remotes {
		s.client = e.client(s)
	}
	cands := make([]*candidate, 0, len(e.remotes))
	for _, s := range e.remotes {
		c, err := e.initialFetch(ctx, s)
		if err != nil {
			return fmt.Errorf("policy: bundle %s: %w", s.cfg.Name, err)
		}
		cands = append(cands, c)
	}
	err := e.apply(ctx, cands...)
	if err == nil {
		return nil
	}
	fellBack := false
	for i, c := range cands {
		if c.fallback != nil {
			cands[i], fellBack = c.fallback, true
		}
	}
	if !fellBack {
		return err
	}
	e.log.Warn("policy: downloaded bundles do not compile; starting from persisted bundles", "error", err)
	if err2 := e.apply(ctx, cands...); err2 != nil {
		return err
	}
	// Serving the persisted copies: keep the download error visible and
	// retry the download soon.
	e.statusMu.Lock()
	for _, s := range e.remotes {
		if s.st.ActivatedFrom == FromPersisted {
			s.st.LastError = err.Error()
			s.failures = 1
		}
	}
	e.statusMu.Unlock()
	return nil
}

// Status returns a copy of the current loading state.
func (e *Engine) Status() Status {
	e.statusMu.Lock()
	s := e.status
	s.Sources = make([]SourceStatus, len(e.sources))
	var errs []string
	if e.reloadErr != "" {
		errs = append(errs, e.reloadErr)
	}
	for i, src := range e.sources {
		s.Sources[i] = src.st
		if src.remote() && src.st.LastError != "" {
			errs = append(errs, src.st.LastError)
		}
	}
	s.LastError = strings.Join(errs, "; ")
	e.statusMu.Unlock()
	if cur := e.snap.Load(); cur != nil {
		s.Ready = true
		s.Revision = cur.revision
	}
	return s
}

// Reload re-reads all path sources now (url sources keep their current
// bundle; Run polls them). If the content is unchanged the prepared query is
// kept; otherwise the bundles are compiled and prepared and the new policy
// replaces the old one atomically. On error the previous policy keeps
// serving, the error is recorded in Status and returned.
func (e *Engine) Reload(ctx context.Context) error {
	return e.apply(ctx)
}

// apply loads the path sources plus the given candidates (and the current
// bundle of every other url source), and swaps the result in if it compiled
// and differs from the serving policy. Activated downloads are persisted.
func (e *Engine) apply(ctx context.Context, cands ...*candidate) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	start := time.Now()
	next, changed, err := e.load(ctx, cands)
	if err == nil {
		for _, c := range cands {
			c.src.active, c.src.etag = c.rb, c.etag
		}
	}
	persisted := make([]error, len(cands))
	if err == nil {
		for i, c := range cands {
			persisted[i] = e.persistCandidate(c)
		}
	}

	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	e.recordAttempt(cands, start)
	if err != nil {
		e.recordFailure(cands, err)
		return err
	}
	e.recordSuccess(cands, persisted, changed, start)
	if !changed {
		return nil
	}
	e.retire(e.snap.Swap(next))
	for i, s := range e.sources {
		s.st.Revision = next.revs[i]
	}
	e.status.Loads++
	e.status.LastLoad = time.Now()
	e.log.Info("policy loaded", "revision", next.revision, "duration", time.Since(start))
	return nil
}

// recordAttempt stamps the attempt on the engine and on the sources it
// covered: the path sources for a reload (no candidates), else the
// candidates' sources. Called with statusMu held.
func (e *Engine) recordAttempt(cands []*candidate, start time.Time) {
	e.status.LastAttempt = start
	if len(cands) == 0 {
		for _, s := range e.sources {
			if !s.remote() {
				s.st.LastAttempt = start
			}
		}
	}
	for _, c := range cands {
		c.src.st.LastAttempt = start
	}
}

// recordFailure records and logs a load that failed; the serving policy is
// kept. Called with statusMu held.
func (e *Engine) recordFailure(cands []*candidate, err error) {
	e.status.Failures++
	if len(cands) == 0 {
		e.reloadErr = err.Error()
		for _, s := range e.sources {
			if !s.remote() {
				s.st.LastError = e.reloadErr
			}
		}
	}
	for _, c := range cands {
		c.src.st.LastError = err.Error()
	}
	e.log.Error("policy load failed; previous policy keeps serving",
		"error", err, "serving", e.snap.Load() != nil)
}

// recordSuccess clears the errors of the sources that loaded and records
// where each candidate came from and whether it was persisted (persisted[i]
// is the persistence error of cands[i]). Called with statusMu held.
func (e *Engine) recordSuccess(cands []*candidate, persisted []error, changed bool, start time.Time) {
	if len(cands) == 0 {
		if e.reloadErr != "" {
			e.log.Info("policy recovered: the bundle loads again", "changed", changed)
		}
		e.reloadErr = ""
		for _, s := range e.sources {
			if !s.remote() {
				s.st.LastError, s.st.LastSuccess = "", start
			}
		}
	}
	for i, c := range cands {
		st := &c.src.st
		st.ETag, st.ActivatedFrom = c.etag, c.from
		if c.from == FromDownload {
			// A persisted copy is activated because the download failed:
			// that error stays visible until a download succeeds.
			if st.LastError != "" {
				e.log.Info("policy recovered: the bundle loads again", "bundle", c.src.cfg.Name, "changed", changed)
			}
			st.LastError, st.LastSuccess = "", start
		}
		switch {
		case c.from == FromPersisted:
			st.Persisted, st.PersistError = true, ""
		case persisted[i] != nil:
			st.Persisted, st.PersistError = false, persisted[i].Error()
			e.log.Warn("policy: could not persist bundle", "bundle", c.src.cfg.Name, "error", persisted[i])
		case c.src.cfg.Persist:
			st.Persisted, st.PersistError = true, ""
		}
	}
}

// load reads the bundles and, if their content changed, builds a new snapshot.
// Called with reloadMu held.
func (e *Engine) load(ctx context.Context, cands []*candidate) (*snapshot, bool, error) {
	raws := make([]*rawBundle, 0, len(e.sources))
	h := sha256.New()
	for _, s := range e.sources {
		var rb *rawBundle
		if s.remote() {
			rb = s.active
			for _, c := range cands {
				if c.src == s {
					rb = c.rb
				}
			}
			if rb == nil {
				return nil, false, fmt.Errorf("policy: bundle %s: not downloaded yet", s.cfg.Name)
			}
		} else {
			var err error
			if rb, err = readSource(ctx, s.cfg.Path, s.vc); err != nil {
				return nil, false, fmt.Errorf("policy: %w", err)
			}
		}
		raws = append(raws, rb)
		h.Write([]byte(s.cfg.Name))
		h.Write([]byte{0})
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

// retireGrace is how long a replaced policy's decision cache stays open
// after the swap: an evaluation holds its snapshot for one Evaluate call
// (microseconds; bounded by the caller's context, Envoy's ext_authz
// timeout), so none still uses it after this.
const retireGrace = time.Minute

// retire closes a replaced snapshot's decision cache once no evaluation
// can still use it. Before, every policy change left the previous cache,
// its ristretto goroutines and up to policy.decision_cache_size decisions
// in memory for the life of the process.
func (e *Engine) retire(prev *snapshot) {
	if prev == nil || prev.decisions == nil {
		return
	}
	time.AfterFunc(e.retireAfter, prev.decisions.c.Close)
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
	if err := checkDataErrors(ctx, compiler, store); err != nil {
		return nil, err
	}
	pq, err := rego.New(
		rego.Query(e.cfg.Query),
		rego.Compiler(compiler),
		rego.Store(store),
		rego.GenerateJSON(identityJSON),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare %s: %w", e.cfg.Query, err)
	}
	fast, err := newFastQuery(ctx, compiler, store, e.cfg.Query)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare %s: %w", e.cfg.Query, err)
	}
	snap := &snapshot{pq: pq, fast: fast, revision: strings.Join(revs, ","), revs: revs, use: analyzeInputUse(compiler.Modules)}
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
	d, err := snap.evalFast(ctx, input)
	if err != nil {
		return Decision{}, err
	}
	d.Revision = snap.revision
	if cacheKey != "" {
		snap.decisions.put(cacheKey, d)
	}
	return d, nil
}

// evalFast evaluates through the snapshot's fastQuery.
func (s *snapshot) evalFast(ctx context.Context, input ast.Value) (Decision, error) {
	t, err := s.fast.eval(ctx, ast.NewTerm(input))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return Decision{}, fmt.Errorf("policy: evaluate: %w", cerr)
		}
		return Decision{}, fmt.Errorf("policy: evaluate: %w", err)
	}
	if t == nil {
		return Decision{Reason: ReasonUndefined}, nil
	}
	return s.fast.decode(t)
}

// evalRego evaluates through plain rego (PreparedEvalQuery.Eval): the
// reference the fast path is tested against.
func (s *snapshot) evalRego(ctx context.Context, input ast.Value) (Decision, error) {
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	rs, err := s.pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel), evalNoMetrics)
	stop()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return Decision{}, fmt.Errorf("policy: evaluate: %w", cerr)
		}
		return Decision{}, fmt.Errorf("policy: evaluate: %w", err)
	}
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return Decision{Reason: ReasonUndefined}, nil
	case len(rs) > 1:
		return Decision{}, fmt.Errorf("%w: query produced %d results, want 1", ErrBadDecision, len(rs))
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Decision{}, fmt.Errorf("%w: unexpected result type %T", ErrBadDecision, rs[0].Expressions[0].Value)
	}
	return decodeDecision(t.Value)
}
