package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
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

// checkKnownFields walks a YAML node tree alongside the Go type it will be
// decoded into and reports every mapping key that has no field, naming the
// full field path (servers[1].credential.mode) and the line. yaml.v3's own
// KnownFields check names only the Go type, which is no help to an operator.
func checkKnownFields(n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) || t.Implements(textUnmarshalerType) {
			return nil
		}
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) || t == durationType {
		return nil // the type decodes (and checks) itself
	}
	switch n.Kind {
	case yaml.DocumentNode:
		var errs []error
		for _, c := range n.Content {
			errs = append(errs, checkKnownFields(c, t, path)...)
		}
		return errs
	case yaml.AliasNode:
		return []error{fmt.Errorf("%s: YAML aliases are not supported (line %d)", orRoot(path), n.Line)}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			fields := yamlFields(t)
			var errs []error
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				ft, ok := fields[k.Value]
				if !ok {
					errs = append(errs, fmt.Errorf("%s: unknown field (line %d); known fields: %s",
						join(path, k.Value), k.Line, strings.Join(sortedKeys(fields), ", ")))
					continue
				}
				errs = append(errs, checkKnownFields(v, ft, join(path, k.Value))...)
			}
			return errs
		case reflect.Map:
			var errs []error
			for i := 0; i+1 < len(n.Content); i += 2 {
				errs = append(errs, checkKnownFields(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
			}
			return errs
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			var errs []error
			for i, c := range n.Content {
				errs = append(errs, checkKnownFields(c, t.Elem(), path+"["+strconv.Itoa(i)+"]")...)
			}
			return errs
		}
	}
	return nil // scalars and kind mismatches are reported by the decoder itself
}

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
	// small maps: insertion sort keeps this dependency-free
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

// prefixErr prefixes every error joined in err with a field path.
func prefixErr(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) && len(joined.Unwrap()) > 1 {
		var errs []error
		for _, e := range joined.Unwrap() {
			errs = append(errs, prefixErr(prefix, e))
		}
		return errors.Join(errs...)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "[") || strings.HasPrefix(msg, ".") {
		return fmt.Errorf("%s%w", prefix, err)
	}
	return fmt.Errorf("%s.%w", prefix, err)
}
