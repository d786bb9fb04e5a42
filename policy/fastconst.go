package policy

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// constRules returns the paths of the complete rules whose value does not
// depend on the input: every rule at the path, its else branches and
// everything it references reads only data, calls only deterministic
// builtins, and uses no `with`. The analysis is conservative: a reference
// it cannot resolve exactly makes the rule non-constant.
func constRules(c *ast.Compiler) []ast.Ref {
	var rules []*ast.Rule
	byPath := map[string][]*ast.Rule{}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			rules = append(rules, r)
			if constShape(r) {
				gp := r.Ref().GroundPrefix().String()
				byPath[gp] = append(byPath[gp], r)
			}
		}
	}
	memo := map[*ast.Rule]int{} // 1 const, 2 not, 3 in progress
	var isConst func(r *ast.Rule) bool
	isConst = func(r *ast.Rule) bool {
		switch memo[r] {
		case 1:
			return true
		case 2, 3:
			return false // in progress means a cycle: be conservative
		}
		memo[r] = 3
		ok := selfConst(r)
		if ok {
			for _, dep := range ruleDeps(r, rules) {
				if !isConst(dep) {
					ok = false
					break
				}
			}
		}
		memo[r] = 2
		if ok {
			memo[r] = 1
		}
		return ok
	}
	var out []ast.Ref
	for _, rs := range byPath {
		all := true
		kind := constShapeKind(rs[0])
		for _, r := range rs {
			if constShapeKind(r) != kind || !isConst(r) {
				all = false
				break
			}
		}
		// The path must hold nothing else (no other rule on or below it).
		path := rs[0].Ref().GroundPrefix()
		for _, r := range rules {
			if rp := r.Ref().GroundPrefix(); !ruleIn(r, rs) && (refPrefix(rp, path) || refPrefix(path, rp)) {
				all = false
			}
		}
		if all {
			out = append(out, path)
		}
	}
	return out
}

// constShape: a rule without arguments that defines a whole document at
// its ground path: `name := v`, `name contains x` or `name[k] := v`.
func constShape(r *ast.Rule) bool { return constShapeKind(r) != 0 }

func constShapeKind(r *ast.Rule) int {
	h := r.Head
	if len(h.Args) > 0 {
		return 0
	}
	switch {
	case len(h.Reference) == 1 && h.RuleKind() == ast.SingleValue:
		return 1
	case len(h.Reference) == 1 && h.RuleKind() == ast.MultiValue:
		return 2
	case len(h.Reference) == 2 && h.RuleKind() == ast.SingleValue:
		if _, isVar := h.Reference[1].Value.(ast.Var); isVar {
			return 3
		}
	}
	return 0
}

func ruleIn(r *ast.Rule, rs []*ast.Rule) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// refPrefix reports whether a is a prefix of b.
func refPrefix(a, b ast.Ref) bool {
	return len(a) <= len(b) && b[:len(a)].Equal(a)
}

// selfConst checks the rule's own text (head, body, else branches): no
// input, no `with`, no nondeterministic or unknown builtin, no dynamic
// reference into data.
func selfConst(r *ast.Rule) bool {
	ok := true
	ast.WalkRefs(r, func(ref ast.Ref) bool {
		if ref[0].Equal(ast.InputRootDocument) {
			ok = false
		}
		return !ok
	})
	ast.WalkVars(r, func(v ast.Var) bool {
		if v.Equal(ast.InputRootDocument.Value) {
			ok = false
		}
		return !ok
	})
	ast.WalkExprs(r, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			ok = false
		}
		if e.IsCall() {
			op := e.Operator()
			if !op[0].Equal(ast.DefaultRootDocument) {
				b, known := ast.BuiltinMap[op.String()]
				if !known || b.Nondeterministic {
					ok = false
				}
			}
		}
		return !ok
	})
	// Calls through a dynamic operator or terms that are calls.
	ast.WalkTerms(r, func(t *ast.Term) bool {
		if call, isCall := t.Value.(ast.Call); isCall {
			if ref, isRef := call[0].Value.(ast.Ref); isRef && !ref[0].Equal(ast.DefaultRootDocument) {
				b, known := ast.BuiltinMap[ref.String()]
				if !known || b.Nondeterministic {
					ok = false
				}
			}
		}
		return !ok
	})
	return ok
}

// ruleDeps returns every rule a data reference of r may reach: rules whose
// path is a prefix of the reference's ground prefix or extends it.
func ruleDeps(r *ast.Rule, rules []*ast.Rule) []*ast.Rule {
	var deps []*ast.Rule
	seen := map[*ast.Rule]bool{}
	ast.WalkRefs(r, func(ref ast.Ref) bool {
		if !ref[0].Equal(ast.DefaultRootDocument) {
			return false
		}
		gp := ref.GroundPrefix()
		for _, x := range rules {
			xp := x.Ref().GroundPrefix()
			if !seen[x] && (refPrefix(xp, gp) || refPrefix(gp, xp)) {
				seen[x] = true
				deps = append(deps, x)
			}
		}
		return false
	})
	return deps
}

// seedConstants evaluates every input-independent complete rule once and
// stores its value in the constant layer. A rule that fails to evaluate is
// left out (evaluating it per request fails the same way).
func (f *fastQuery) seedConstants(ctx context.Context) {
	for _, path := range constRules(f.compiler) {
		body, err := f.qc.Compile(ast.NewBody(ast.Equality.Expr(ast.NewTerm(resultVar), ast.NewTerm(path))))
		if err != nil {
			continue
		}
		var res *ast.Term
		n := 0
		err = topdown.NewQuery(body).
			WithCompiler(f.compiler).WithQueryCompiler(f.qc).
			WithStore(f.store).WithTransaction(f.txn).
			WithMetrics(noopMetrics).WithIndexing(true).WithEarlyExit(true).
			WithBaseCache(f.base).
			Iter(ctx, func(qr topdown.QueryResult) error {
				n++
				res = qr[resultVar]
				return nil
			})
		if err != nil || n > 1 {
			continue
		}
		f.consts.put(path, res)
	}
}

// decodeStable decodes, once, every ground term the query can return as
// is: rule values written as constants, and constant-layer values and the
// objects inside them that look like decisions (an "allow" or "allowed"
// key). At most maxStableTerms terms are visited.
func (f *fastQuery) decodeStable() map[*ast.Term]Decision {
	out := map[*ast.Term]Decision{}
	add := func(t *ast.Term) {
		if t == nil || !t.IsGround() {
			return
		}
		obj, isObj := t.Value.(ast.Object)
		if !isObj || (obj.Get(ast.InternedTerm("allow")) == nil && obj.Get(ast.InternedTerm("allowed")) == nil) {
			return
		}
		if d, err := decodeDecision(t.Value); err == nil {
			out[t] = d
		}
	}
	for _, m := range f.compiler.Modules {
		for _, r := range m.Rules {
			for x := r; x != nil; x = x.Else {
				add(x.Head.Value)
			}
		}
	}
	visited := 0
	var walk func(t *ast.Term)
	walk = func(t *ast.Term) {
		if visited++; t == nil || visited > maxStableTerms {
			return
		}
		add(t)
		switch v := t.Value.(type) {
		case ast.Object:
			v.Foreach(func(_, x *ast.Term) { walk(x) })
		case *ast.Array:
			v.Foreach(walk)
		}
	}
	var walkNode func(n *constNode)
	walkNode = func(n *constNode) {
		if n.set {
			walk(n.value)
		}
		for _, c := range n.children {
			walkNode(c)
		}
	}
	walkNode(&f.consts.root)
	return out
}

const maxStableTerms = 1 << 20
