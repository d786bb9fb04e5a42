package policy

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputUse records which costly parts of the input the compiled policy can
// read. Parts it provably never references are passed as null, which saves
// most of the input conversion cost (mcp.arguments needs a JSON parse).
type inputUse struct {
	request, arguments, claims, headers, labels bool
	// connection: the policy reads input.connection.
	connection bool
	// mcp has a bit per input.mcp field the policy reads (mcpBit).
	mcp uint16
	// nondeterministic: the policy calls a builtin whose result is not a
	// function of its inputs (time.now_ns, http.send, rand.intn, ...), so
	// its decisions are never memoized.
	nondeterministic bool
	// principal has a bit per input.principal field the policy reads
	// through a constant path (principalBit); claimNames are the claims
	// it reads by constant name (input.principal.claims.<name>...),
	// sorted. wholePrincipal: it reads input.principal some other way
	// (the object itself, a variable key, input as a whole), so any field
	// may matter; allClaims: likewise for input.principal.claims. The
	// decision cache keys on exactly the parts read (principalKey).
	principal                 uint16
	claimNames                []string
	wholePrincipal, allClaims bool
	// id names this analysis (never 0; allInput's is 0): a prepared
	// principal keeps the form converted for one use (PreparedPrincipal).
	id uint64
}

// The fields of input.principal, in key order for the decision cache.
var principalFieldNames = []string{"authenticated", "kind", "subject", "user_id", "user_key", "org",
	"issuer", "client_id", "scopes", "actor", "chain", "spiffe_id", "method", "claims"}

func principalBit(name string) uint16 {
	if i := slices.Index(principalFieldNames, name); i >= 0 {
		return 1 << i
	}
	return 0 // not an input.principal field: always undefined
}

// The fields of input.mcp, in key order for the decision cache.
var mcpFieldNames = []string{"protocol_version", "transport", "session_id", "batch", "batch_size",
	"kind", "method", "tool", "prompt", "uri", "arguments"}

const allMCP = uint16(1)<<11 - 1

func mcpBit(name string) uint16 {
	for i, n := range mcpFieldNames {
		if n == name {
			return 1 << i
		}
	}
	return 0
}

var allInput = inputUse{request: true, arguments: true, claims: true, headers: true, labels: true, connection: true, mcp: allMCP,
	wholePrincipal: true, allClaims: true}

// analyzeInputUse is conservative: any reference to input, or to one of the
// enclosing objects, that does not name a fixed key marks the part as used.
func analyzeInputUse(modules map[string]*ast.Module) inputUse {
	var u inputUse
	claimNames := map[string]bool{}
	for _, m := range modules {
		ast.WalkRefs(m, func(r ast.Ref) bool {
			if !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			key := func(i int) (string, bool) {
				if len(r) <= i {
					return "", false
				}
				s, ok := r[i].Value.(ast.String)
				return string(s), ok
			}
			k1, ok := key(1)
			if !ok {
				nd := u.nondeterministic
				u = allInput
				u.nondeterministic = nd
				return false
			}
			k2, ok2 := key(2)
			switch k1 {
			case "mcp":
				u.arguments = u.arguments || !ok2 || k2 == "arguments"
				if ok2 {
					u.mcp |= mcpBit(k2)
				} else {
					u.mcp = allMCP
				}
			case "principal":
				u.claims = u.claims || !ok2 || k2 == "claims"
				if !ok2 {
					u.wholePrincipal = true
					break
				}
				u.principal |= principalBit(k2)
				if k2 == "claims" {
					if k3, ok3 := key(3); ok3 {
						claimNames[k3] = true
					} else {
						u.allClaims = true
					}
				}
			case "request":
				u.request = true
				u.headers = u.headers || !ok2 || k2 == "headers"
			case "server":
				u.labels = u.labels || !ok2 || k2 == "labels"
			case "connection":
				u.connection = true
			}
			return false
		})
	}
	for n := range claimNames {
		u.claimNames = append(u.claimNames, n)
	}
	slices.Sort(u.claimNames)
	u.id = preparedIDs.Add(1)
	for _, m := range modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if !e.IsCall() {
				return false
			}
			if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.Nondeterministic {
				u.nondeterministic = true
			}
			return false
		})
	}
	return u
}
