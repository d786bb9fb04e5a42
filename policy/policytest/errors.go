package policytest

import (
	"errors"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
)

// RegoError is one parse, type or compile error with its position.
type RegoError struct {
	File     string
	Row, Col int
	Code     string // e.g. rego_parse_error
	Message  string
}

func (e *RegoError) Error() string {
	var b strings.Builder
	if e.File != "" || e.Row > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Row, e.Col)
	}
	if e.Code != "" {
		b.WriteString(e.Code)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is returned by Run when the bundles do not load or compile. Its
// message is Context followed by one "file:row:col: code: message" line per
// error.
type Errors struct {
	Context string // e.g. "policytest: load bundles/abac"
	Errs    []*RegoError
}

func (e *Errors) Error() string {
	lines := make([]string, 0, len(e.Errs)+1)
	lines = append(lines, fmt.Sprintf("%s: %d error(s):", e.Context, len(e.Errs)))
	for _, x := range e.Errs {
		lines = append(lines, "  "+x.Error())
	}
	return strings.Join(lines, "\n")
}

// regoErrors flattens OPA's error types (ast.Errors, *ast.Error,
// loader.Errors, wrapped or joined) into *Errors.
func regoErrors(context string, err error) error {
	out := &Errors{Context: context}
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case ast.Errors:
			for _, x := range e {
				walk(x)
			}
		case loader.Errors:
			for _, x := range e {
				walk(x)
			}
		case *ast.Error:
			re := &RegoError{Code: e.Code, Message: e.Message}
			if e.Location != nil {
				re.File, re.Row, re.Col = e.Location.File, e.Location.Row, e.Location.Col
			}
			out.Errs = append(out.Errs, re)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			if inner := errors.Unwrap(err); inner != nil {
				var ae ast.Errors
				var le loader.Errors
				var one *ast.Error
				if errors.As(err, &ae) || errors.As(err, &le) || errors.As(err, &one) {
					walk(inner)
					return
				}
			}
			out.Errs = append(out.Errs, &RegoError{Message: err.Error()})
		}
	}
	walk(err)
	return out
}
