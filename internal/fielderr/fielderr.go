// Package fielderr collects the problems a configuration's Validate finds,
// each prefixed with the field path it concerns ("keys[0].file: required"),
// so that all of them are reported at once.
package fielderr

import (
	"errors"
	"fmt"
)

// List is the problems found so far. The zero value is empty and ready to
// use; other errors may be appended to it as to any []error.
type List []error

// Add records "path: msg".
func (l *List) Add(path, msg string) { *l = append(*l, errors.New(path+": "+msg)) }

// Addf records "path: " followed by format formatted with args.
func (l *List) Addf(path, format string, args ...any) {
	*l = append(*l, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// Err returns the problems joined (errors.Join), or nil when there are none.
func (l List) Err() error { return errors.Join(l...) }
