package policy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// fastQuery evaluates a snapshot's decision query through topdown directly,
// with everything that does not depend on the request prepared once per
// snapshot:
//
//   - the query is compiled once, exactly as rego.PrepareForEval compiles
//     it (a capture of the query's value into one variable);
//   - the data document is read from the store once and served from a
//     read-only base cache, and the store is read (for paths that do not
//     exist) through one long-lived read transaction;
//   - every complete rule whose value cannot depend on the input (no input
//     reference, no nondeterministic builtin, no `with`, only such rules
//     and functions below it) is evaluated at load time and served from the
//     virtual cache's constant layer — partial evaluation of the policy
//     against its data;
//   - the topdown.Query, its virtual cache and the result holder are
//     pooled, and no metrics, tracing, instrumentation or print hooks run;
//   - decisions that are ground terms of the compiled policy (a constant
//     result object) are decoded once.
//
// Decisions are identical to rego's PreparedEvalQuery.Eval of the same
// query (fast_test.go compares both over generated corpora of every shipped
// bundle). Safe for concurrent use.
type fastQuery struct {
	compiler *ast.Compiler
	qc       ast.QueryCompiler
	body     ast.Body
	store    storage.Store
	// txn is a read transaction open for the snapshot's lifetime. The
	// snapshot's store is never written after it is built, so holding the
	// store's read lock forever blocks nobody.
	txn    storage.Transaction
	base   *readOnlyBase
	consts *constLayer
	// decoded holds the decisions of ground result terms that belong to
	// the snapshot (rule values, constant-layer values); read-only.
	decoded map[*ast.Term]Decision
	native  *nativeQuery // nil: every evaluation goes through topdown
	pool    sync.Pool    // *fastState
}

// resultVar captures the query's value, like rego's __localq0__.
var resultVar = ast.Var("__mcpauthz_result__")

var (
	noopMetrics     = metrics.NoOp()
	requestMetadata = map[string]any{} // read by external data resolvers only; never written
)

// fastState is the per-evaluation state reused through the pool.
type fastState struct {
	q      *topdown.Query
	vc     *frameCache
	cancel flagCancel
}

// flagCancel is a topdown.Cancel that can be reset for reuse.
type flagCancel struct{ c atomic.Bool }

func (f *flagCancel) Cancel()         { f.c.Store(true) }
func (f *flagCancel) Cancelled() bool { return f.c.Load() }

func newFastQuery(ctx context.Context, compiler *ast.Compiler, store storage.Store, query string) (*fastQuery, error) {
	qref, err := ast.ParseRef(query)
	if err != nil {
		return nil, err
	}
	qc := compiler.QueryCompiler().WithEnablePrintStatements(false).WithStrict(false)
	body, err := qc.Compile(ast.NewBody(ast.Equality.Expr(ast.NewTerm(resultVar), ast.NewTerm(qref))))
	if err != nil {
		return nil, err
	}
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	root, err := store.Read(ctx, txn, storage.Path{})
	if err != nil {
		store.Abort(ctx, txn)
		return nil, err
	}
	rootVal, ok := root.(ast.Value)
	if !ok {
		store.Abort(ctx, txn)
		return nil, fmt.Errorf("store returned %T, want an AST value", root)
	}
	if obj, ok := rootVal.(ast.Object); ok && obj.Get(ast.InternedTerm(string(ast.SystemDocumentKey))) != nil {
		rootVal, _ = obj.Map(func(k, v *ast.Term) (*ast.Term, *ast.Term, error) {
			if k.Equal(ast.InternedTerm(string(ast.SystemDocumentKey))) {
				return nil, nil, nil
			}
			return k, v, nil
		})
	}
	f := &fastQuery{compiler: compiler, qc: qc, body: body, store: store, txn: txn,
		base: &readOnlyBase{root: rootVal}, consts: &constLayer{}}
	f.pool.New = func() any { return &fastState{q: topdown.NewQuery(f.body), vc: &frameCache{}} }
	f.seedConstants(ctx)
	f.decoded = f.decodeStable()
	f.native = newNativeQuery(compiler, qref, f.consts, rootVal)
	return f, nil
}

// eval evaluates the query for one input value. It returns the result term
// (nil when the query is undefined). ctx cancels the evaluation.
func (f *fastQuery) eval(ctx context.Context, input *ast.Term) (*ast.Term, error) {
	if f.native != nil {
		if t, ok := f.native.eval(input.Value); ok {
			return t, nil
		}
	}
	st := f.pool.Get().(*fastState)
	st.vc.reset(f.consts)
	st.cancel.c.Store(false)
	var stop func() bool
	if ctx.Done() != nil {
		// Cancellation without a goroutine per evaluation.
		stop = context.AfterFunc(ctx, st.cancel.Cancel)
	}
	q := st.q.
		WithCompiler(f.compiler).
		WithQueryCompiler(f.qc).
		WithStore(f.store).
		WithTransaction(f.txn).
		WithInput(input).
		WithMetrics(noopMetrics).
		WithIndexing(true).
		WithEarlyExit(true).
		WithTime(time.Time{}). // Iter takes the current time
		WithRequestMetadata(requestMetadata).
		WithBaseCache(f.base).
		WithVirtualCache(st.vc).
		WithCancel(&st.cancel)
	var res *ast.Term
	n := 0
	err := q.Iter(ctx, func(qr topdown.QueryResult) error {
		n++
		res = qr[resultVar]
		return nil
	})
	q.WithInput(nil)
	st.vc.reset(nil)
	// Once the cancel callback has started it may still run: that state
	// must not serve another evaluation.
	if stop == nil || stop() {
		f.pool.Put(st)
	}
	if err != nil {
		return nil, err
	}
	if n > 1 {
		return nil, fmt.Errorf("%w: query produced %d results, want 1", ErrBadDecision, n)
	}
	return res, nil
}

// decode converts a result term, using the pre-decoded stable terms.
func (f *fastQuery) decode(t *ast.Term) (Decision, error) {
	if d, ok := f.decoded[t]; ok {
		return d, nil
	}
	return decodeDecision(t.Value)
}

// readOnlyBase is a topdown.BaseCache holding the whole data document,
// converted once. Put is a no-op: every existing base document is already
// in it, so a miss means the path does not exist.
type readOnlyBase struct{ root ast.Value }

func (b *readOnlyBase) Get(ref ast.Ref) ast.Value {
	if len(ref) == 0 || !ref[0].Equal(ast.DefaultRootDocument) {
		return nil
	}
	if len(ref) == 1 {
		return b.root
	}
	v, err := b.root.Find(ref[1:])
	if err != nil {
		return nil
	}
	return v
}

func (*readOnlyBase) Put(ast.Ref, ast.Value) {}

// constLayer maps the refs of input-independent complete rules to their
// values (nil value: undefined). Read-only after seeding.
type constLayer struct {
	root constNode
}

type constNode struct {
	children  map[ast.Value]*constNode
	value     *ast.Term
	set       bool
	undefined bool
}

// comparableKey reports whether v can be a map key (Ref, Call are slices).
func comparableKey(v ast.Value) bool {
	switch v.(type) {
	case ast.String, ast.Var, ast.Number, ast.Boolean, ast.Null:
		return true
	}
	return false
}

func (c *constLayer) put(ref ast.Ref, v *ast.Term) {
	n := &c.root
	for _, t := range ref {
		if n.children == nil {
			n.children = map[ast.Value]*constNode{}
		}
		next := n.children[t.Value]
		if next == nil {
			next = &constNode{}
			n.children[t.Value] = next
		}
		n = next
	}
	n.set, n.value, n.undefined = true, v, v == nil
}

func (c *constLayer) get(ref ast.Ref) (*ast.Term, bool, bool) {
	if c == nil {
		return nil, false, false
	}
	n := &c.root
	for _, t := range ref {
		if n.children == nil || !comparableKey(t.Value) {
			return nil, false, false
		}
		if n = n.children[t.Value]; n == nil {
			return nil, false, false
		}
	}
	return n.value, n.undefined, n.set
}

// frameCache is a topdown.VirtualCache that reuses its memory across
// evaluations: entries are kept in flat slices, one frame per `with`
// scope, compared by exact ref as OPA's trie does. At the base frame (no
// `with` in effect) the snapshot's constant layer answers for the
// input-independent rules. Not safe for concurrent use (one per
// evaluation).
type frameCache struct {
	consts  *constLayer
	keys    []*ast.Term
	entries []frameEntry
	frames  []int // index of each frame's first entry
}

type frameEntry struct {
	start, end int // key terms in keys
	value      *ast.Term
}

var _ topdown.VirtualCache = (*frameCache)(nil)

func (c *frameCache) reset(consts *constLayer) {
	clear(c.keys)
	clear(c.entries)
	c.keys, c.entries, c.frames = c.keys[:0], c.entries[:0], append(c.frames[:0], 0)
	c.consts = consts
}

func (c *frameCache) Push() { c.frames = append(c.frames, len(c.entries)) }

func (c *frameCache) Pop() {
	top := c.frames[len(c.frames)-1]
	c.frames = c.frames[:len(c.frames)-1]
	if top < len(c.entries) {
		c.keys = c.keys[:c.entries[top].start]
		clear(c.entries[top:])
		c.entries = c.entries[:top]
	}
}

func (c *frameCache) find(ref ast.Ref) int {
	top := c.frames[len(c.frames)-1]
	for i := len(c.entries) - 1; i >= top; i-- {
		e := &c.entries[i]
		if e.end-e.start != len(ref) {
			continue
		}
		k := c.keys[e.start:e.end]
		eq := true
		for j := len(ref) - 1; j >= 0; j-- {
			if !k[j].Equal(ref[j]) {
				eq = false
				break
			}
		}
		if eq {
			return i
		}
	}
	return -1
}

func (c *frameCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if i := c.find(ref); i >= 0 {
		v := c.entries[i].value
		return v, v == nil
	}
	if len(c.frames) == 1 {
		if v, undefined, ok := c.consts.get(ref); ok {
			return v, undefined
		}
	}
	return nil, false
}

func (c *frameCache) Put(ref ast.Ref, value *ast.Term) {
	if i := c.find(ref); i >= 0 {
		c.entries[i].value = value
		return
	}
	start := len(c.keys)
	c.keys = append(c.keys, ref...)
	c.entries = append(c.entries, frameEntry{start: start, end: len(c.keys), value: value})
}

func (c *frameCache) Keys() []ast.Ref {
	top := c.frames[len(c.frames)-1]
	out := make([]ast.Ref, 0, len(c.entries)-top)
	for _, e := range c.entries[top:] {
		if e.value != nil {
			out = append(out, ast.Ref(c.keys[e.start:e.end]).Copy())
		}
	}
	return out
}
