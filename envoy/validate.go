package envoy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	// Extensions whose typed_config may appear in a bootstrap; importing
	// them registers their types so "@type" URLs resolve. A type not listed
	// here is reported as unknown rather than skipped.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Issue is one problem found in an Envoy configuration. Path is the field
// path in proto (YAML) names, e.g.
// "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.merge_slashes";
// Line is the 1-based YAML line when known (0 otherwise).
type Issue struct {
	Path    string
	Line    int
	Message string
}

func (i Issue) String() string {
	p := i.Path
	if p == "" {
		p = "(document)"
	}
	if i.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", p, i.Line, i.Message)
	}
	return p + ": " + i.Message
}

// ValidationError lists every Issue found by ValidateBootstrapYAML.
type ValidationError struct {
	Issues []Issue
}

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		lines[i] = is.String()
	}
	return "envoy: invalid bootstrap: " + strings.Join(lines, "; ")
}

// ValidateBootstrapYAML checks an Envoy v3 bootstrap in YAML (or JSON) the
// way Envoy would load it, without an Envoy binary:
//
//   - the YAML is walked against the Bootstrap proto descriptor: unknown
//     fields, wrong scalar types, unknown enum values, unresolvable "@type"
//     URLs, duplicate keys and negative durations are reported with their
//     field path and line;
//   - the document is decoded with protojson (unknown fields rejected);
//   - go-control-plane's ValidateAll (protoc-gen-validate rules) runs on the
//     Bootstrap and, recursively, on every message packed in an Any
//     (typed_config and friends), which ValidateAll alone does not open.
//
// It returns nil or a *ValidationError. Safe for concurrent use.
func ValidateBootstrapYAML(data []byte) error {
	_, err := ParseBootstrapYAML(data)
	return err
}

// ParseBootstrapYAML is ValidateBootstrapYAML returning the decoded
// Bootstrap on success.
func ParseBootstrapYAML(data []byte) (*bootstrapv3.Bootstrap, error) {
	d, err := ParseBootstrapDocument(data)
	if err != nil {
		return nil, err
	}
	return d.Bootstrap, nil
}

// Document is a schema-valid bootstrap together with the YAML line of every
// field path it spells out, so that SecurityIssues can say where a finding
// is. Read-only after ParseBootstrapDocument; safe for concurrent use.
type Document struct {
	Bootstrap *bootstrapv3.Bootstrap
	lines     map[string]int
}

// Line returns the YAML line of path, or of its closest ancestor that the
// document spells out (a missing field is reported at its parent); 0 when
// unknown.
func (d *Document) Line(path string) int {
	if d == nil {
		return 0
	}
	return nearestLine(d.lines, path)
}

// SecurityIssues is the package-level SecurityIssues on d's Bootstrap with
// every Issue's Line filled in. It is what `mcpauthz envoy validate
// --strict` reports.
func (d *Document) SecurityIssues(o StrictOptions) []Issue {
	issues := SecurityIssuesWith(d.Bootstrap, o)
	for i := range issues {
		if issues[i].Line == 0 {
			issues[i].Line = d.Line(issues[i].Path)
		}
	}
	return issues
}

// ParseBootstrapDocument is ParseBootstrapYAML keeping the field path ->
// line table for SecurityIssues.
func ParseBootstrapDocument(data []byte) (*Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ValidationError{Issues: []Issue{{Message: "empty document"}}}
		}
		return nil, &ValidationError{Issues: []Issue{{Message: "invalid YAML: " + err.Error()}}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Issues: []Issue{{Line: extra.Line, Message: "more than one YAML document (a bootstrap is one document)"}}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	w := &walker{lines: map[string]int{}}
	b := &bootstrapv3.Bootstrap{}
	w.message(root, b.ProtoReflect().Descriptor(), "")
	if len(w.issues) > 0 {
		return nil, &ValidationError{Issues: w.issues}
	}
	j, err := json.Marshal(toJSONValue(root, 0))
	if err != nil {
		return nil, &ValidationError{Issues: []Issue{{Message: "cannot convert to JSON: " + err.Error()}}}
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, b); err != nil {
		// The walk above catches what protojson checks; this is a backstop.
		return nil, &ValidationError{Issues: []Issue{{Message: err.Error()}}}
	}
	var issues []Issue
	collectPGV(b, "", w.lines, &issues)
	if len(issues) > 0 {
		return nil, &ValidationError{Issues: issues}
	}
	return &Document{Bootstrap: b, lines: w.lines}, nil
}

// maxNodes bounds the YAML nodes visited (aliases expanded), so anchors
// that reference each other cannot make validation exponential.
const maxNodes = 1 << 20

// maxDepth bounds nesting (a recursive alias is infinitely deep).
const maxDepth = 256

var errTooLarge = errors.New("document too large or too deeply nested once YAML aliases are expanded")

// walker checks a YAML tree against message descriptors.
type walker struct {
	issues  []Issue
	lines   map[string]int // field path -> YAML line, for PGV errors
	visited int
	depth   int
	aborted bool
}

// enter counts a node; false means the budget is spent (reported once).
func (w *walker) enter(n *yaml.Node, path string) bool {
	w.visited++
	if w.aborted {
		return false
	}
	if w.visited > maxNodes || w.depth > maxDepth {
		w.aborted = true
		w.add(n, path, "%v", errTooLarge)
		return false
	}
	return true
}

func (w *walker) add(n *yaml.Node, path, format string, a ...any) {
	w.issues = append(w.issues, Issue{Path: path, Line: n.Line, Message: fmt.Sprintf(format, a...)})
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// message checks n as a message of type md at path.
func (w *walker) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string) {
	n = deref(n)
	if !w.enter(n, path) {
		return
	}
	w.depth++
	defer func() { w.depth-- }()
	w.lines[path] = n.Line
	if isNull(n) {
		return
	}
	switch md.FullName() {
	case "google.protobuf.Any":
		w.anyMessage(n, path)
		return
	case "google.protobuf.Duration":
		w.duration(n, path)
		return
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.Timestamp", "google.protobuf.FieldMask", "google.protobuf.Empty":
		w.freeform(n, path) // free-form or string-encoded; protojson checks them
		return
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		w.scalar(n, md.Fields().ByName("value"), path)
		return
	}
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected a mapping for %s", md.FullName())
		return
	}
	w.fields(n, md, path, nil)
}

// fields checks the key/value pairs of mapping n; skip names keys handled
// by the caller (the "@type" of an Any).
func (w *walker) fields(n *yaml.Node, md protoreflect.MessageDescriptor, path string, skip map[string]bool) {
	seen := map[string]bool{}
	oneofs := map[protoreflect.FullName]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		key := k.Value
		if skip[key] {
			continue
		}
		fp := joinPath(path, key)
		if seen[key] {
			w.add(k, fp, "duplicate key %q", key)
			continue
		}
		seen[key] = true
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		if fd == nil {
			w.add(k, fp, "unknown field %q in %s", key, md.FullName())
			continue
		}
		// Paths (and the line table SecurityIssues reads) use proto
		// names whether the YAML spelled the key in snake or camel case.
		fp = joinPath(path, fd.TextName())
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && !isNull(v) {
			if prev, dup := oneofs[od.FullName()]; dup {
				w.add(k, fp, "only one of %s and %s may be set (oneof %s)", prev, key, od.Name())
			}
			oneofs[od.FullName()] = key
		}
		w.value(v, fd, fp)
		w.lines[fp] = k.Line // report a field at its key, not at its value's first line
	}
}

// freeform only counts the nodes below n against the size budget.
func (w *walker) freeform(n *yaml.Node, path string) {
	for _, c := range n.Content {
		c = deref(c)
		if !w.enter(c, path) {
			return
		}
		w.depth++
		w.freeform(c, path)
		w.depth--
	}
}

// value checks n as the value of field fd.
func (w *walker) value(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	if !w.enter(n, path) {
		return
	}
	w.lines[path] = n.Line
	if isNull(n) {
		return
	}
	switch {
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expected a mapping")
			return
		}
		vd := fd.MapValue()
		for i := 0; i+1 < len(n.Content); i += 2 {
			kp := fmt.Sprintf("%s[%s]", path, n.Content[i].Value)
			w.single(deref(n.Content[i+1]), vd, kp)
			w.lines[kp] = n.Content[i].Line
		}
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "expected a list")
			return
		}
		for i, e := range n.Content {
			w.single(deref(e), fd, fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		w.single(n, fd, path)
	}
}

// single checks one (non-repeated) value of fd's kind.
func (w *walker) single(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	w.lines[path] = n.Line
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		w.message(n, fd.Message(), path)
		return
	}
	w.scalar(n, fd, path)
}

func (w *walker) scalar(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		w.add(n, path, "expected a %s value", fd.Kind())
		return
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if n.Tag != "!!bool" {
			w.add(n, path, "expected true or false, got %q", n.Value)
		}
	case protoreflect.StringKind:
		if n.Tag != "!!str" {
			w.add(n, path, "expected a string, got %s %q (quote it)", strings.TrimPrefix(n.Tag, "!!"), n.Value)
		}
	case protoreflect.BytesKind:
		if n.Tag != "!!str" {
			w.add(n, path, "expected a base64 string")
		}
	case protoreflect.EnumKind:
		w.enum(n, fd.Enum(), path)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		w.integer(n, path, math.MinInt32, math.MaxInt32)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		w.integer(n, path, 0, math.MaxUint32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		w.integer(n, path, math.MinInt64, math.MaxInt64)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		w.integer(n, path, 0, math.MaxInt64) // YAML ints beyond this are rare; protojson checks the rest
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if n.Tag != "!!int" && n.Tag != "!!float" {
			if _, err := strconv.ParseFloat(n.Value, 64); err != nil && n.Value != "NaN" && n.Value != "Infinity" && n.Value != "-Infinity" {
				w.add(n, path, "expected a number, got %q", n.Value)
			}
		}
	}
}

func (w *walker) integer(n *yaml.Node, path string, lo, hi int64) {
	if n.Tag != "!!int" && n.Tag != "!!str" {
		w.add(n, path, "expected an integer, got %q", n.Value)
		return
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if err != nil {
		w.add(n, path, "expected an integer, got %q", n.Value)
		return
	}
	if v < lo || v > hi {
		w.add(n, path, "%d out of range [%d, %d]", v, lo, hi)
	}
}

func (w *walker) enum(n *yaml.Node, ed protoreflect.EnumDescriptor, path string) {
	if n.Tag == "!!int" {
		v, err := strconv.ParseInt(n.Value, 0, 32)
		if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(v)) == nil {
			w.add(n, path, "invalid value %s for enum %s", n.Value, ed.FullName())
		}
		return
	}
	if ed.Values().ByName(protoreflect.Name(n.Value)) != nil {
		return
	}
	names := make([]string, 0, ed.Values().Len())
	for i := range ed.Values().Len() {
		names = append(names, string(ed.Values().Get(i).Name()))
	}
	w.add(n, path, "invalid value %q for enum %s; one of %s", n.Value, ed.FullName(), strings.Join(names, ", "))
}

// duration checks a JSON-form Duration ("1.5s") and rejects negative ones,
// as Envoy does when it loads a configuration.
func (w *walker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || !strings.HasSuffix(n.Value, "s") {
		w.add(n, path, "expected a duration such as \"1s\" or \"0.25s\", got %q", n.Value)
		return
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(n.Value, "s"), 64)
	switch {
	case err != nil:
		w.add(n, path, "expected a duration such as \"1s\" or \"0.25s\", got %q", n.Value)
	case f < 0:
		w.add(n, path, "duration %s must not be negative", n.Value)
	case f > 315576000000:
		w.add(n, path, "duration %s out of range", n.Value)
	}
}

func (w *walker) anyMessage(n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected a mapping with \"@type\"")
		return
	}
	var typ *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "@type" {
			typ = deref(n.Content[i+1])
		}
	}
	tp := joinPath(path, "@type")
	if typ == nil {
		w.add(n, tp, "missing \"@type\"")
		return
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typ.Value)
	if err != nil {
		w.add(typ, tp, "unknown type %q (not an Envoy v3 type this validator knows)", typ.Value)
		return
	}
	md := mt.Descriptor()
	if md.FullName().Parent() == "google.protobuf" {
		w.freeform(n, path) // well-known type packed as {"@type", "value"}: protojson checks it
		return
	}
	w.fields(n, md, path, map[string]bool{"@type": true})
}

// toJSONValue converts a YAML tree to values encoding/json marshals the way
// protojson expects: mappings to objects, sequences to arrays, !!int and
// !!float to numbers, !!bool to booleans, everything else to strings.
// The walk that runs first bounds size and depth; depth is checked again
// here because free-form fields (google.protobuf.Struct) are not walked.
func toJSONValue(n *yaml.Node, depth int) any {
	n = deref(n)
	if depth > maxDepth {
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return toJSONValue(n.Content[0], depth+1)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = toJSONValue(n.Content[i+1], depth+1)
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, e := range n.Content {
			s[i] = toJSONValue(e, depth+1)
		}
		return s
	}
	switch n.Tag {
	case "!!null":
		return nil
	case "!!bool":
		return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
	case "!!int":
		if v, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return json.Number(strconv.FormatInt(v, 10))
		}
		return json.Number(n.Value)
	case "!!float":
		if _, err := strconv.ParseFloat(n.Value, 64); err == nil {
			return json.Number(n.Value)
		}
	}
	return n.Value
}

// pgvError is the shape of protoc-gen-validate's generated errors.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

type multiError interface{ AllErrors() []error }

// collectPGV runs ValidateAll on m and on every message packed in an Any
// below it, appending one Issue per violated rule.
func collectPGV(m proto.Message, path string, lines map[string]int, out *[]Issue) {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			flattenPGV(err, m.ProtoReflect().Descriptor(), path, lines, out)
		}
	}
	walkAnys(m.ProtoReflect(), path, func(a *anypb.Any, p string) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			*out = append(*out, Issue{Path: p, Line: lines[p], Message: err.Error()})
			return
		}
		collectPGV(inner, p, lines, out)
	})
}

// walkAnys calls f for each Any directly reachable from m (not inside
// another Any), with its field path.
func walkAnys(m protoreflect.Message, path string, f func(*anypb.Any, string)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		fp := joinPath(path, fd.TextName())
		visit := func(mv protoreflect.Message, p string) {
			if a, ok := mv.Interface().(*anypb.Any); ok {
				f(a, p)
				return
			}
			walkAnys(mv, p, f)
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				return true
			}
			var keys []string
			vals := map[string]protoreflect.Message{}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				keys = append(keys, k.String())
				vals[k.String()] = mv.Message()
				return true
			})
			sort.Strings(keys)
			for _, k := range keys {
				visit(vals[k], fmt.Sprintf("%s[%s]", fp, k))
			}
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				visit(l.Get(i).Message(), fmt.Sprintf("%s[%d]", fp, i))
			}
		default:
			visit(v.Message(), fp)
		}
		return true
	})
}

// flattenPGV turns a (possibly nested) PGV error into Issues whose paths use
// proto field names: PGV reports Go names ("StaticResources",
// "Listeners[0]"), which are mapped back through the descriptors.
func flattenPGV(err error, md protoreflect.MessageDescriptor, path string, lines map[string]int, out *[]Issue) {
	if me, ok := err.(multiError); ok {
		for _, e := range me.AllErrors() {
			flattenPGV(e, md, path, lines, out)
		}
		return
	}
	pe, ok := err.(pgvError)
	if !ok {
		*out = append(*out, Issue{Path: path, Line: lines[path], Message: err.Error()})
		return
	}
	seg, fd := pgvSegment(pe.Field(), md)
	fp := joinPath(path, seg)
	if c := pe.Cause(); c != nil && fd != nil {
		next := fd.Message()
		if fd.IsMap() {
			next = fd.MapValue().Message()
		}
		if next != nil {
			if _, isPGV := c.(pgvError); isPGV {
				flattenPGV(c, next, fp, lines, out)
				return
			}
			if _, isMulti := c.(multiError); isMulti {
				flattenPGV(c, next, fp, lines, out)
				return
			}
		}
	}
	msg := pe.Reason()
	if pe.Key() {
		msg = "key: " + msg
	}
	if c := pe.Cause(); c != nil {
		msg += ": " + c.Error()
	}
	*out = append(*out, Issue{Path: fp, Line: nearestLine(lines, fp), Message: msg})
}

// pgvSegment maps a PGV field name such as "FilterChains[0]" to
// "filter_chains[0]" and the field's descriptor.
func pgvSegment(field string, md protoreflect.MessageDescriptor) (string, protoreflect.FieldDescriptor) {
	name, suffix := field, ""
	if i := strings.IndexByte(field, '['); i >= 0 {
		name, suffix = field[:i], field[i:]
	}
	want := strings.ToLower(name)
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if strings.ToLower(strings.ReplaceAll(string(fd.Name()), "_", "")) == want {
			return fd.TextName() + suffix, fd
		}
	}
	return field, nil
}

// nearestLine returns the YAML line of path or of its closest ancestor.
func nearestLine(lines map[string]int, path string) int {
	for p := path; p != ""; {
		if l, ok := lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}
