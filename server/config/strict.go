package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	durationType        = reflect.TypeFor[time.Duration]()
)

// FieldError is one problem in a config file: the field path
// (servers[1].credential.mode), the line it is written on (0 when the field
// is absent from the file) and what is wrong.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

func (e *FieldError) Error() string {
	switch {
	case e.Path == "":
		return fmt.Sprintf("(root) (line %d): %s", e.Line, e.Msg)
	case e.Line == 0:
		return e.Path + ": " + e.Msg
	}
	return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
}

// lines maps field paths to the line they are written on.
type lines map[string]int

// checker walks a YAML node tree alongside the Go type it will be decoded
// into, before the decoder runs, and reports every problem by field path
// and line: unknown keys (yaml.v3's KnownFields names only the Go type),
// values of the wrong kind (yaml.v3 names only the line, and silently
// turns `yes` into true and 1.5 into 1), and the errors of types that
// decode themselves (secret references, key sources). It also records
// where each field is written, so that Validate's errors can name lines.
type checker struct {
	lines lines
	errs  []error
}

func (c *checker) fail(path string, line int, format string, a ...any) {
	c.errs = append(c.errs, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, a...)})
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.DocumentNode {
		for _, d := range n.Content {
			c.check(d, t, path)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		c.fail(path, n.Line, "YAML aliases are not supported")
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value leaves the field unset
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		u := reflect.New(t).Interface().(yaml.Unmarshaler)
		if err := u.UnmarshalYAML(n); err != nil {
			c.fail(path, n.Line, "%s", stripLine(err.Error()))
		}
		return
	}
	if t == durationType {
		if _, err := time.ParseDuration(n.Value); n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || err != nil {
			c.fail(path, n.Line, "want a duration such as 500ms, 30s, 5m or 24h, got %s", describe(n))
		}
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return // the decoder reports its errors
	}
	switch t.Kind() {
	case reflect.Struct:
		if c.want(n, yaml.MappingNode, path, "a mapping") {
			c.mapping(n, t, path)
		}
	case reflect.Map:
		if c.want(n, yaml.MappingNode, path, "a mapping") {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				c.lines[p] = k.Line
				c.check(v, t.Elem(), p)
			}
		}
	case reflect.Slice, reflect.Array:
		if c.want(n, yaml.SequenceNode, path, "a list") {
			for i, e := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				c.lines[p] = e.Line
				c.check(e, t.Elem(), p)
			}
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			c.fail(path, n.Line, "want a boolean (true or false), got %s", describe(n))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			c.fail(path, n.Line, "want a whole number, got %s", describe(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			c.fail(path, n.Line, "want a number, got %s", describe(n))
		}
	case reflect.String:
		c.want(n, yaml.ScalarNode, path, "a string")
	}
}

// want reports a node of another kind than k.
func (c *checker) want(n *yaml.Node, k yaml.Kind, path, what string) bool {
	if n.Kind == k {
		return true
	}
	c.fail(path, n.Line, "want %s, got %s", what, describe(n))
	return false
}

// mapping checks the keys of a struct's mapping.
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := yamlFields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		ft, ok := fields[k.Value]
		if !ok {
			c.fail(p, k.Line, "unknown field; known fields: %s", strings.Join(sortedKeys(fields), ", "))
			continue
		}
		c.lines[p] = k.Line
		c.check(v, ft, p)
	}
}

// describe names a node's value for an error: a scalar quoted and cut
// short, a mapping or list by its kind.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	if n.ShortTag() == "!!str" {
		return strconv.Quote(v)
	}
	return v
}

// lineRE is the "line N: " (optionally after "pkg: ") that self-decoding
// types put in their errors; FieldError names the line instead.
var lineRE = regexp.MustCompile(`^(?:[a-z]+: )?line \d+: `)

func stripLine(msg string) string { return lineRE.ReplaceAllString(msg, "") }

// yamlFields maps YAML keys to field types, following ",inline" structs.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decodeLineRE matches one entry of a yaml.TypeError.
var decodeLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// fieldErrors turns the decoder's "line N: cannot unmarshal ..." entries
// into FieldErrors naming the field written on that line. The checker
// refuses wrong kinds before decoding, so this is a fallback.
func (l lines) fieldErrors(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	byLine := map[int]string{}
	for p, n := range l {
		if q, ok := byLine[n]; !ok || len(p) > len(q) {
			byLine[n] = p
		}
	}
	var errs []error
	for _, e := range te.Errors {
		m := decodeLineRE.FindStringSubmatch(e)
		if m == nil {
			errs = append(errs, errors.New(e))
			continue
		}
		n, _ := strconv.Atoi(m[1])
		errs = append(errs, &FieldError{Path: byLine[n], Line: n, Msg: m[2]})
	}
	return errors.Join(errs...)
}

// pathRE is the field path an error message starts with.
var pathRE = regexp.MustCompile(`^([A-Za-z0-9_]+(?:\[\d+\]|\.[^:\s]+)*): `)

// withLines rewrites each "path: msg" error joined in err as a FieldError
// naming the line of that field, or of its nearest ancestor written in the
// file (a defaulted field has no line of its own).
func (l lines) withLines(err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range flatten(err) {
		msg := e.Error()
		m := pathRE.FindStringSubmatch(msg)
		if m == nil {
			errs = append(errs, e)
			continue
		}
		fe := &FieldError{Path: m[1], Msg: msg[len(m[0]):]}
		for p := m[1]; p != ""; p = parentPath(p) {
			if n, ok := l[p]; ok {
				fe.Line = n
				break
			}
		}
		errs = append(errs, fe)
	}
	return errors.Join(errs...)
}

// parentPath drops the last segment: a.b[2] -> a.b -> a -> "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i > 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i > 0 {
		return p[:i]
	}
	return ""
}

// flatten lists the errors joined in err (recursively).
func flatten(err error) []error {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		var out []error
		for _, e := range joined.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// wrapperRE matches the prefix a package puts before its own field errors
// ("identity: invalid config: "); the field path replaces it.
var wrapperRE = regexp.MustCompile(`^[a-z]+: invalid config: `)

// prefixErr prefixes every error joined in err with a field path. A
// package's wrapper in front of its field errors is dropped, and a message
// that already starts with the path (connect.login.issuer: ...) is kept,
// so that no path names a block twice (identity.identity:,
// connect.connect.login). "issuer: ..." under prefix "issuer" is the
// field issuer.issuer and does get the prefix.
func prefixErr(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	for _, e := range flatten(err) {
		msg := wrapperRE.ReplaceAllString(e.Error(), "")
		if strings.HasPrefix(msg, prefix+".") || strings.HasPrefix(msg, prefix+"[") {
			errs = append(errs, errors.New(msg))
		} else if strings.HasPrefix(msg, "[") || strings.HasPrefix(msg, ".") {
			errs = append(errs, errors.New(prefix+msg))
		} else {
			errs = append(errs, errors.New(prefix+"."+msg))
		}
	}
	return errors.Join(errs...)
}
