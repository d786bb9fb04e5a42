package policy

import "github.com/open-policy-agent/opa/v1/ast"

// inputUse records which costly parts of the input the compiled policy can
// read. Parts it provably never references are passed as null, which saves
// most of the input conversion cost (mcp.arguments needs a JSON parse).
type inputUse struct {
	request, arguments, claims, headers, labels bool
}

var allInput = inputUse{request: true, arguments: true, claims: true, headers: true, labels: true}

// analyzeInputUse is conservative: any reference to input, or to one of the
// enclosing objects, that does not name a fixed key marks the part as used.
func analyzeInputUse(modules map[string]*ast.Module) inputUse {
	var u inputUse
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
				u = allInput
				return false
			}
			k2, ok2 := key(2)
			switch k1 {
			case "mcp":
				u.arguments = u.arguments || !ok2 || k2 == "arguments"
			case "principal":
				u.claims = u.claims || !ok2 || k2 == "claims"
			case "request":
				u.request = true
				u.headers = u.headers || !ok2 || k2 == "headers"
			case "server":
				u.labels = u.labels || !ok2 || k2 == "labels"
			}
			return false
		})
	}
	return u
}
