package policy

import (
	"errors"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// nativeQuery decides the common case without topdown: the leading else
// branches of the decision rule, when their compiled bodies use only
//
//   - equality/assignment between input references, data references (base
//     documents, or rules of the constant layer), variables and constants,
//     including iteration over a collection by an unbound last key;
//   - calls of pure built-ins (membership, type tests, comparisons, count,
//     regex.match, ...), negated or not;
//
// are evaluated here, in order, with every solution of a branch checked to
// give the same value (a complete rule's conflict). The first branch with a
// solution decides. When every native branch is undefined, when a branch
// after them would be needed, or on anything unexpected at run time (a
// built-in error, a non-ground value, conflicting solutions), the caller
// evaluates the whole query with topdown instead, so decisions are exactly
// topdown's. The decision rule must be the only rule at its path (a default
// rule aside) with nothing below it. Read-only after construction; safe for
// concurrent use.
type nativeQuery struct {
	branches []nativeBranch
	consts   *constLayer
	data     *ast.Term
	pool     sync.Pool // *nativeState
}

type nativeBranch struct {
	body  []nativeExpr
	value nTerm
}

type nativeExpr struct {
	negated bool
	every   *nativeEvery
	truthy  *nTerm // a term as an expression: defined and not false
	// eq: a = b
	eq   bool
	a, b nTerm
	// call
	fn     topdown.BuiltinFunc
	args   []nTerm
	out    *nTerm // output operand, nil for predicates
	result bool   // the builtin declares a result (predicate semantics apply)
}

// nativeEvery is `every key, value in domain { body }`.
type nativeEvery struct {
	domain     nTerm
	key, value int // slots
	body       []nativeExpr
}

type nTermKind uint8

const (
	nConst nTermKind = iota
	nVar
	nInput // input ref: path elements
	nData  // base document ref: path elements under data
	nRule  // constant-layer rule: value of rule, then path elements
	nLocal // a local variable's value (slot v), then path elements
	nComp  // a composite with variables: term, with vars in slots
)

type nTerm struct {
	kind nTermKind
	term *ast.Term   // nConst
	v    int         // nVar: slot
	rule *ast.Term   // nRule: the rule's value (nil: undefined)
	path []nPathElem // refs
	vars map[ast.Var]int
}

type nPathElem struct {
	term *ast.Term // ground key, or nil for a variable
	v    int       // slot
}

// errNativeFallback makes the caller evaluate with topdown.
var errNativeFallback = errors.New("native: fall back to topdown")

// nativeState is one evaluation's state, pooled: variable slots, the
// operands of built-in calls, their outputs and the branch being run.
type nativeState struct {
	nq      *nativeQuery
	in      *ast.Term
	slots   []*ast.Term
	args    []*ast.Term
	outs    []*ast.Term
	collect func(*ast.Term) error // appends to outs; made once per state
	body    []nativeExpr
	sub     bool // body is an every body: its end records a solution
	value   nTerm
	result  *ast.Term
	found   bool
}

// errFound ends the evaluation of a negated expression at its first
// solution.
var errFound = errors.New("native: found")

// newNativeQuery compiles the leading branches of the rule at qref; nil
// when not even the first branch is in the subset.
func newNativeQuery(c *ast.Compiler, qref ast.Ref, consts *constLayer, data ast.Value) *nativeQuery {
	var main *ast.Rule
	for _, r := range c.GetRulesExact(qref) {
		if r.Default {
			continue
		}
		if main != nil {
			return nil // several definitions: conflicts are topdown's
		}
		main = r
	}
	if main == nil || len(main.Head.Args) > 0 || main.Head.RuleKind() != ast.SingleValue || !main.Head.Ref().IsGround() {
		return nil
	}
	for _, r := range c.GetRulesWithPrefix(qref) {
		if !r.Ref().GroundPrefix().Equal(main.Ref().GroundPrefix()) || len(r.Head.Ref()) != len(main.Head.Ref()) {
			return nil // rules below the decision
		}
	}
	allRules := c.GetRulesWithPrefix(ast.DefaultRootRef)
	nq := &nativeQuery{consts: consts, data: ast.NewTerm(data)}
	nslots := 0
	for b := main; b != nil; b = b.Else {
		cc := &nativeCompiler{c: c, rules: allRules, consts: consts, slots: map[ast.Var]int{}}
		br, ok := cc.branch(b)
		if !ok {
			break
		}
		nq.branches = append(nq.branches, br)
		nslots = max(nslots, len(cc.slots))
	}
	if len(nq.branches) == 0 {
		return nil
	}
	nq.pool.New = func() any {
		st := &nativeState{nq: nq, slots: make([]*ast.Term, nslots)}
		st.collect = func(t *ast.Term) error { st.outs = append(st.outs, t); return nil }
		return st
	}
	return nq
}

// pureBuiltins may be called without a BuiltinContext: they read nothing
// but their operands (regex.match uses the process-wide regexp cache, as
// topdown does when no inter-query cache is configured).
var pureBuiltins = map[string]bool{
	"internal.member_2": true, "internal.member_3": true,
	"is_array": true, "is_string": true, "is_number": true, "is_boolean": true, "is_object": true, "is_set": true, "is_null": true,
	"neq": true, "equal": true, "lt": true, "gt": true, "lte": true, "gte": true,
	"count": true, "startswith": true, "endswith": true, "contains": true, "regex.match": true,
	"object.keys": true, "object.get": true, "object.filter": true, "type_name": true, "split": true, "lower": true, "upper": true,
}

type nativeCompiler struct {
	c      *ast.Compiler
	rules  []*ast.Rule
	consts *constLayer
	slots  map[ast.Var]int
	bound  map[ast.Var]bool
}

func (cc *nativeCompiler) slot(v ast.Var) int {
	if i, ok := cc.slots[v]; ok {
		return i
	}
	cc.slots[v] = len(cc.slots)
	return cc.slots[v]
}

func (cc *nativeCompiler) branch(r *ast.Rule) (nativeBranch, bool) {
	cc.bound = map[ast.Var]bool{}
	var br nativeBranch
	for _, e := range r.Body {
		ne, ok := cc.expr(e)
		if !ok {
			return br, false
		}
		br.body = append(br.body, ne)
	}
	v, ok := cc.term(r.Head.Value, false)
	if !ok || (v.kind == nVar && !cc.bound[r.Head.Value.Value.(ast.Var)]) {
		return br, false
	}
	br.value = v
	return br, true
}

func (cc *nativeCompiler) expr(e *ast.Expr) (nativeExpr, bool) {
	if len(e.With) > 0 {
		return nativeExpr{}, false
	}
	if ev, ok := e.Terms.(*ast.Every); ok {
		return cc.every(e, ev)
	}
	if t, ok := e.Terms.(*ast.Term); ok {
		nt, ok := cc.term(t, false)
		if !ok || !cc.resolvable(nt) {
			return nativeExpr{}, false
		}
		return nativeExpr{negated: e.Negated, truthy: &nt}, true
	}
	terms, isCall := e.Terms.([]*ast.Term)
	if !isCall || len(terms) == 0 {
		return nativeExpr{}, false
	}
	op := e.Operator().String()
	ne := nativeExpr{negated: e.Negated}
	before := cc.boundCopy()
	if op == ast.Equality.Name || op == ast.Assign.Name {
		if len(terms) != 3 {
			return ne, false
		}
		a, aok := cc.term(terms[1], true)
		b, bok := cc.term(terms[2], true)
		if !aok || !bok || !cc.eqBinds(a, b, terms[1], terms[2]) {
			return ne, false
		}
		ne.eq, ne.a, ne.b = true, a, b
	} else {
		if !pureBuiltins[op] {
			return ne, false
		}
		bi, ok := ast.BuiltinMap[op]
		fn := topdown.GetBuiltin(op)
		if !ok || fn == nil {
			return ne, false
		}
		arity := bi.Decl.Arity()
		ops := terms[1:]
		if len(ops) != arity && len(ops) != arity+1 {
			return ne, false
		}
		ne.fn, ne.result = fn, bi.Decl.Result() != nil
		for _, t := range ops[:arity] {
			nt, ok := cc.term(t, false)
			if !ok || !cc.resolvable(nt) {
				return ne, false
			}
			ne.args = append(ne.args, nt)
		}
		if len(ops) == arity+1 {
			out, ok := cc.term(ops[arity], true)
			if !ok || out.kind != nVar && out.kind != nConst {
				return ne, false
			}
			if out.kind == nVar {
				cc.bound[ops[arity].Value.(ast.Var)] = true
			}
			ne.out = &out
		}
	}
	if e.Negated {
		// A negated expression binds nothing outside it; require it to
		// bind nothing at all.
		if len(cc.bound) != len(before) {
			return ne, false
		}
	}
	return ne, true
}

func (cc *nativeCompiler) every(e *ast.Expr, ev *ast.Every) (nativeExpr, bool) {
	if e.Negated || ev.Key == nil || ev.Value == nil {
		return nativeExpr{}, false
	}
	kv, ok1 := ev.Key.Value.(ast.Var)
	vv, ok2 := ev.Value.Value.(ast.Var)
	if !ok1 || !ok2 || kv.Equal(vv) || cc.bound[kv] || cc.bound[vv] {
		return nativeExpr{}, false
	}
	dom, ok := cc.term(ev.Domain, false)
	if !ok || !cc.resolvable(dom) {
		return nativeExpr{}, false
	}
	before := cc.boundCopy()
	ne := &nativeEvery{domain: dom, key: cc.slot(kv), value: cc.slot(vv)}
	cc.bound[kv], cc.bound[vv] = true, true
	for _, x := range ev.Body {
		sub, ok := cc.expr(x)
		if !ok {
			return nativeExpr{}, false
		}
		ne.body = append(ne.body, sub)
	}
	cc.bound = before // every binds nothing outside its body
	return nativeExpr{every: ne}, true
}

func (cc *nativeCompiler) boundCopy() map[ast.Var]bool {
	m := make(map[ast.Var]bool, len(cc.bound))
	for k, v := range cc.bound {
		m[k] = v
	}
	return m
}

// eqBinds checks that a = b can be evaluated with the current bindings and
// records what it binds: an unbound variable on one side, or an unbound
// last key of a reference (iteration).
func (cc *nativeCompiler) eqBinds(a, b nTerm, ta, tb *ast.Term) bool {
	av, bv := cc.unboundVar(a, ta), cc.unboundVar(b, tb)
	ai, bi := cc.iterVar(a), cc.iterVar(b)
	switch {
	case av != "" && bv != "":
		return false
	case ai != "" && bi != "":
		return false
	case av != "":
		if bi != "" {
			cc.bound[ast.Var(bi)] = true
		} else if !cc.resolvable(b) {
			return false
		}
		cc.bound[ast.Var(av)] = true
	case bv != "":
		if ai != "" {
			cc.bound[ast.Var(ai)] = true
		} else if !cc.resolvable(a) {
			return false
		}
		cc.bound[ast.Var(bv)] = true
	case ai != "":
		if !cc.resolvable(b) {
			return false
		}
		cc.bound[ast.Var(ai)] = true
	case bi != "":
		if !cc.resolvable(a) {
			return false
		}
		cc.bound[ast.Var(bi)] = true
	default:
		return cc.resolvable(a) && cc.resolvable(b)
	}
	return true
}

func (cc *nativeCompiler) unboundVar(t nTerm, raw *ast.Term) ast.Var {
	if t.kind != nVar {
		return ""
	}
	v := raw.Value.(ast.Var)
	if cc.bound[v] {
		return ""
	}
	return v
}

// iterVar returns the unbound variable in the last position of a ref, if
// every other variable in it is bound.
func (cc *nativeCompiler) iterVar(t nTerm) ast.Var {
	if t.kind != nInput && t.kind != nData && t.kind != nRule && t.kind != nLocal || len(t.path) == 0 {
		return ""
	}
	if t.kind == nLocal && !cc.bound[cc.varOf(t.v)] {
		return ""
	}
	last := t.path[len(t.path)-1]
	if last.term != nil {
		return ""
	}
	v := cc.varOf(last.v)
	if cc.bound[v] {
		return ""
	}
	for _, p := range t.path[:len(t.path)-1] {
		if p.term == nil && !cc.bound[cc.varOf(p.v)] {
			return ""
		}
	}
	return v
}

func (cc *nativeCompiler) varOf(slot int) ast.Var {
	for v, i := range cc.slots {
		if i == slot {
			return v
		}
	}
	return ""
}

// resolvable: every variable the term reads is bound.
func (cc *nativeCompiler) resolvable(t nTerm) bool {
	switch t.kind {
	case nVar:
		return cc.bound[cc.varOf(t.v)]
	case nComp:
		for v := range t.vars {
			if !cc.bound[v] {
				return false
			}
		}
	case nLocal:
		if !cc.bound[cc.varOf(t.v)] {
			return false
		}
		for _, p := range t.path {
			if p.term == nil && !cc.bound[cc.varOf(p.v)] {
				return false
			}
		}
	case nInput, nData, nRule:
		for _, p := range t.path {
			if p.term == nil && !cc.bound[cc.varOf(p.v)] {
				return false
			}
		}
	}
	return true
}

// term compiles an operand. Composite constants must be ground.
func (cc *nativeCompiler) term(t *ast.Term, _ bool) (nTerm, bool) {
	switch v := t.Value.(type) {
	case ast.Var:
		if v.IsWildcard() || v.Equal(ast.InputRootDocument.Value) || v.Equal(ast.DefaultRootDocument.Value) {
			return nTerm{}, false
		}
		return nTerm{kind: nVar, v: cc.slot(v)}, true
	case ast.Ref:
		return cc.ref(v)
	case ast.Call:
		return nTerm{}, false
	default:
		if t.IsGround() {
			return nTerm{kind: nConst, term: t}, true
		}
		switch t.Value.(type) {
		case ast.Object, *ast.Array, ast.Set:
		default:
			return nTerm{}, false
		}
		vars := map[ast.Var]int{}
		ok := true
		ast.WalkTerms(t, func(x *ast.Term) bool {
			switch v := x.Value.(type) {
			case ast.Var:
				if v.IsWildcard() || !isLocal(x) {
					ok = false
				}
				vars[v] = cc.slot(v)
			case ast.Ref, ast.Call, *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension:
				ok = false
			}
			return !ok
		})
		return nTerm{kind: nComp, term: t, vars: vars}, ok
	}
}

func (cc *nativeCompiler) ref(r ast.Ref) (nTerm, bool) {
	path := func(elems ast.Ref) ([]nPathElem, bool) {
		out := make([]nPathElem, 0, len(elems))
		for _, e := range elems {
			switch v := e.Value.(type) {
			case ast.Var:
				if v.IsWildcard() {
					return nil, false
				}
				out = append(out, nPathElem{v: cc.slot(v)})
			case ast.String, ast.Number, ast.Boolean, ast.Null:
				out = append(out, nPathElem{term: e})
			default:
				return nil, false
			}
		}
		return out, true
	}
	switch {
	case r[0].Equal(ast.InputRootDocument):
		p, ok := path(r[1:])
		return nTerm{kind: nInput, path: p}, ok
	case isLocal(r[0]):
		p, ok := path(r[1:])
		return nTerm{kind: nLocal, v: cc.slot(r[0].Value.(ast.Var)), path: p}, ok
	case r[0].Equal(ast.DefaultRootDocument):
		gp := r.GroundPrefix()
		for _, rule := range cc.rules {
			rp := rule.Ref().GroundPrefix()
			if refPrefix(gp, rp) && len(rp) > len(gp) {
				return nTerm{}, false // the ref may select rules below it
			}
			if refPrefix(rp, gp) {
				// A rule on the way: only a constant-layer rule whose
				// path is exactly a prefix of the reference.
				v, undefined, ok := cc.consts.get(rp)
				if !ok {
					return nTerm{}, false
				}
				if undefined {
					v = nil
				}
				p, ok := path(r[len(rp):])
				return nTerm{kind: nRule, rule: v, path: p}, ok
			}
		}
		p, ok := path(r[1:])
		return nTerm{kind: nData, path: p}, ok
	}
	return nTerm{}, false
}

func isLocal(t *ast.Term) bool {
	v, ok := t.Value.(ast.Var)
	return ok && !v.IsWildcard() && !t.Equal(ast.InputRootDocument) && !t.Equal(ast.DefaultRootDocument)
}

// eval runs the native branches. ok is false when topdown must decide.
func (nq *nativeQuery) eval(input ast.Value) (*ast.Term, bool) {
	st := nq.pool.Get().(*nativeState)
	in := ast.Term{Value: input}
	st.in = &in
	defer func() {
		clear(st.slots)
		clear(st.args)
		clear(st.outs)
		st.args, st.outs, st.in, st.body, st.result = st.args[:0], st.outs[:0], nil, nil, nil
		nq.pool.Put(st)
	}()
	for i := range nq.branches {
		br := &nq.branches[i]
		clear(st.slots)
		st.body, st.sub, st.value, st.result = br.body, false, br.value, nil
		if err := st.run(0); err != nil {
			return nil, false
		}
		if st.result != nil {
			return st.result, true
		}
	}
	return nil, false
}

// cont continues after a solution of expression k-1: with expression k,
// the branch's value at the end of the body, or, for k < 0, by recording
// that a negated expression has a solution.
func (st *nativeState) cont(k int) error {
	if k < 0 {
		st.found = true
		return errFound
	}
	return st.run(k)
}

func (st *nativeState) run(i int) error {
	if i == len(st.body) {
		if st.sub {
			st.found = true
			return errFound
		}
		v, ok := st.resolve(st.value)
		if !ok || !v.IsGround() {
			return errNativeFallback
		}
		if st.result != nil && !st.result.Equal(v) {
			return errNativeFallback // conflicting values: topdown's error
		}
		st.result = v
		return nil
	}
	e := &st.body[i]
	switch {
	case e.every != nil:
		all, err := st.every(e.every)
		if err != nil || !all {
			return err
		}
		return st.run(i + 1)
	case e.negated:
		saved := st.found
		st.found = false
		err := st.expr(e, -1)
		found := st.found
		st.found = saved
		if err != nil && err != errFound {
			return err
		}
		if found {
			return nil
		}
		return st.run(i + 1)
	}
	return st.expr(e, i+1)
}

// every reports whether the body has a solution for every key and value
// of the domain; a domain that is not a collection fails, as in topdown.
func (st *nativeState) every(ev *nativeEvery) (bool, error) {
	dom, ok := st.resolve(ev.domain)
	if !ok {
		return false, nil
	}
	all := true
	visit := func(k, v *ast.Term) error {
		st.slots[ev.key], st.slots[ev.value] = k, v
		found, err := st.runSub(ev.body)
		st.slots[ev.key], st.slots[ev.value] = nil, nil
		if err != nil {
			return err
		}
		if !found {
			all = false
			return errFound // stop: one element without a solution
		}
		return nil
	}
	var err error
	switch c := dom.Value.(type) {
	case *ast.Array:
		for i := range c.Len() {
			if err = visit(ast.InternedTerm(i), c.Elem(i)); err != nil {
				break
			}
		}
	case ast.Object:
		err = c.Iter(visit)
	case ast.Set:
		err = c.Iter(func(x *ast.Term) error { return visit(x, x) })
	default:
		return false, nil
	}
	if err != nil && err != errFound {
		return false, err
	}
	return all, nil
}

// runSub runs an every body and reports whether it has a solution.
func (st *nativeState) runSub(body []nativeExpr) (bool, error) {
	savedBody, savedSub, savedFound := st.body, st.sub, st.found
	st.body, st.sub, st.found = body, true, false
	err := st.run(0)
	found := st.found
	st.body, st.sub, st.found = savedBody, savedSub, savedFound
	if err == errFound {
		err = nil
	}
	return found, err
}

func (st *nativeState) expr(e *nativeExpr, k int) error {
	if e.truthy != nil {
		v, ok := st.resolve(*e.truthy)
		if !ok {
			return nil
		}
		if b, isBool := v.Value.(ast.Boolean); isBool && !bool(b) {
			return nil
		}
		return st.cont(k)
	}
	if e.eq {
		return st.unify(e.a, e.b, k)
	}
	n, o := len(st.args), len(st.outs)
	for _, a := range e.args {
		t, ok := st.resolve(a)
		if !ok {
			clear(st.args[n:])
			st.args = st.args[:n]
			return nil // an undefined operand: the expression is undefined
		}
		st.args = append(st.args, t)
	}
	err := e.fn(topdown.BuiltinContext{}, st.args[n:], st.collect)
	clear(st.args[n:])
	st.args = st.args[:n]
	if err != nil {
		return errNativeFallback // built-in errors (and halts) are topdown's
	}
	defer func() {
		clear(st.outs[o:])
		st.outs = st.outs[:o]
	}()
	for j := o; j < len(st.outs); j++ {
		out := st.outs[j]
		switch {
		case !e.result:
		case e.out == nil:
			if b, ok := out.Value.(ast.Boolean); ok && !bool(b) {
				continue
			}
		default:
			if err := st.unifyTerm(*e.out, out, k); err != nil {
				return err
			}
			continue
		}
		if err := st.cont(k); err != nil {
			return err
		}
	}
	return nil
}

// unify evaluates a = b as compiled (see eqBinds).
func (st *nativeState) unify(a, b nTerm, k int) error {
	switch {
	case a.kind == nVar && st.slots[a.v] == nil:
		return st.each(b, a, k)
	case b.kind == nVar && st.slots[b.v] == nil:
		return st.each(a, b, k)
	case st.iterates(a):
		return st.each(a, b, k)
	}
	return st.each(b, a, k)
}

// unifyTerm unifies a compiled term with a value: binds an unbound
// variable, otherwise compares.
func (st *nativeState) unifyTerm(a nTerm, v *ast.Term, k int) error {
	if a.kind == nVar && st.slots[a.v] == nil {
		st.slots[a.v] = v
		err := st.cont(k)
		st.slots[a.v] = nil
		return err
	}
	t, ok := st.resolve(a)
	if !ok || !ast.ValueEqual(t.Value, v.Value) {
		return nil
	}
	return st.cont(k)
}

func (st *nativeState) iterates(t nTerm) bool {
	if t.kind == nVar || t.kind == nConst || len(t.path) == 0 {
		return false
	}
	last := t.path[len(t.path)-1]
	return last.term == nil && st.slots[last.v] == nil
}

// each unifies other with the value of t, or with every element of t
// when its last key is an unbound variable (binding it).
func (st *nativeState) each(t, other nTerm, k int) error {
	if !st.iterates(t) {
		v, ok := st.resolve(t)
		if !ok {
			return nil
		}
		return st.unifyTerm(other, v, k)
	}
	prefix := t
	prefix.path = t.path[:len(t.path)-1]
	coll, ok := st.resolve(prefix)
	if !ok {
		return nil
	}
	slot := t.path[len(t.path)-1].v
	visit := func(key, v *ast.Term) error {
		st.slots[slot] = key
		err := st.unifyTerm(other, v, k)
		st.slots[slot] = nil
		return err
	}
	switch c := coll.Value.(type) {
	case *ast.Array:
		for i := range c.Len() {
			if err := visit(ast.InternedTerm(i), c.Elem(i)); err != nil {
				return err
			}
		}
	case ast.Object:
		return c.Iter(visit)
	case ast.Set:
		return c.Iter(func(x *ast.Term) error { return visit(x, x) })
	}
	return nil
}

// resolve returns the value of a term whose variables are bound.
func (st *nativeState) resolve(t nTerm) (*ast.Term, bool) {
	var cur *ast.Term
	switch t.kind {
	case nConst:
		return t.term, true
	case nComp:
		return st.plug(t.term, t.vars)
	case nVar:
		v := st.slots[t.v]
		return v, v != nil
	case nInput:
		cur = st.in
	case nData:
		cur = st.nq.data
	case nRule:
		if t.rule == nil {
			return nil, false
		}
		cur = t.rule
	case nLocal:
		if cur = st.slots[t.v]; cur == nil {
			return nil, false
		}
	}
	for _, p := range t.path {
		key := p.term
		if key == nil {
			if key = st.slots[p.v]; key == nil {
				return nil, false
			}
		}
		next := selectTerm(cur, key)
		if next == nil {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// plug builds a composite with its variables' values.
func (st *nativeState) plug(t *ast.Term, vars map[ast.Var]int) (*ast.Term, bool) {
	switch v := t.Value.(type) {
	case ast.Var:
		x := st.slots[vars[v]]
		return x, x != nil
	case ast.Object:
		kvs := make([][2]*ast.Term, 0, v.Len())
		ok := true
		v.Foreach(func(k, x *ast.Term) {
			pk, ok1 := st.plug(k, vars)
			px, ok2 := st.plug(x, vars)
			ok = ok && ok1 && ok2
			kvs = append(kvs, [2]*ast.Term{pk, px})
		})
		return ast.ObjectTerm(kvs...), ok
	case *ast.Array:
		xs := make([]*ast.Term, v.Len())
		for i := range xs {
			x, ok := st.plug(v.Elem(i), vars)
			if !ok {
				return nil, false
			}
			xs[i] = x
		}
		return ast.ArrayTerm(xs...), true
	case ast.Set:
		xs := make([]*ast.Term, 0, v.Len())
		ok := true
		v.Foreach(func(x *ast.Term) {
			px, ok1 := st.plug(x, vars)
			ok = ok && ok1
			xs = append(xs, px)
		})
		return ast.SetTerm(xs...), ok
	}
	return t, true
}

// selectTerm is x[k] for an object, array or set, as topdown reads a ref.
func selectTerm(x, k *ast.Term) *ast.Term {
	switch c := x.Value.(type) {
	case ast.Object:
		return c.Get(k)
	case *ast.Array:
		n, ok := k.Value.(ast.Number)
		if !ok {
			return nil
		}
		i, ok := n.Int()
		if !ok || i < 0 || i >= c.Len() {
			return nil
		}
		return c.Elem(i)
	case ast.Set:
		if c.Contains(k) {
			return k
		}
	}
	return nil
}
