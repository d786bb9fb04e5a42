package main

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/mint"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// typeKey is one key of one config struct type. A type used in several
// places (servers[].credential and servers[].credential_options[]) has its
// keys listed once.
type typeKey struct {
	owner reflect.Type
	key   string
}

// acceptedKeys derives every key config.Config accepts from the yaml tags,
// each with the first path it is reachable at
// (servers[].credential.delegated.sts.client_auth). Removed keys (kept only
// to be refused with a pointer to what replaces them) are left out.
func acceptedKeys(t reflect.Type) map[typeKey]string {
	out := map[typeKey]string{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
			return // decodes itself: {env: X}, {file: P}, PEM, claim paths
		}
		switch t.Kind() {
		case reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				if _, opts, _ := strings.Cut(f.Tag.Get("yaml"), ","); strings.Contains(opts, "inline") {
					walk(f.Type, path)
					continue
				}
				name, ok := yamlName(f)
				if !ok || f.Type == reflect.TypeFor[mint.Removed]() {
					continue
				}
				k := typeKey{t, name}
				if _, seen := out[k]; seen {
					continue
				}
				out[k] = joinPath(path, name)
				walk(f.Type, joinPath(path, name))
			}
		case reflect.Slice, reflect.Array:
			walk(t.Elem(), path+"[]")
		case reflect.Map:
			walk(t.Elem(), joinPath(path, "*"))
		}
	}
	walk(t, "")
	return out
}

// commentedKey is a commented-out key or list item of the example, such as
// "  # jwks_url: https://…": it documents a key that cannot be set beside
// the others (an alternative), and counts as listed.
var commentedKey = regexp.MustCompile(`(?m)^(\s*)# ?( *)((?:- )?[a-z][a-z0-9_]*:(?: |$).*)$`)

// exampleKeys lists the keys the example sets or shows commented out.
func exampleKeys(t *testing.T, doc []byte) map[typeKey]bool {
	t.Helper()
	uncommented := commentedKey.ReplaceAll(doc, []byte("$1$2$3"))
	var root yaml.Node
	if err := yaml.Unmarshal(uncommented, &root); err != nil {
		t.Fatalf("config.example.yaml with its commented keys uncommented is not YAML (indent commented keys as if they were set): %v", err)
	}
	keys := map[typeKey]bool{}
	var walk func(n *yaml.Node, ty reflect.Type)
	walk = func(n *yaml.Node, ty reflect.Type) {
		for ty.Kind() == reflect.Pointer {
			ty = ty.Elem()
		}
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], ty)
		case yaml.SequenceNode:
			if ty.Kind() == reflect.Slice {
				for _, c := range n.Content {
					walk(c, ty.Elem())
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				switch ty.Kind() {
				case reflect.Map:
					walk(n.Content[i+1], ty.Elem())
				case reflect.Struct:
					if f, ok := fieldByYAML(ty, k); ok {
						keys[typeKey{ty, k}] = true
						walk(n.Content[i+1], f.Type)
					}
				}
			}
		}
	}
	walk(&root, reflect.TypeFor[config.Config]())
	return keys
}

func fieldByYAML(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if name, ok := yamlName(t.Field(i)); ok && name == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// TestExampleListsEveryKey: config.example.yaml says it lists every key
// with its default; every key the config types accept must be in it, set
// or commented out.
func TestExampleListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	have := exampleKeys(t, doc)
	accepted := acceptedKeys(reflect.TypeFor[config.Config]())
	if len(accepted) < 80 {
		t.Fatalf("only %d keys derived from the config types", len(accepted))
	}
	var missing []string
	for k, path := range accepted {
		if !have[k] {
			missing = append(missing, path)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("config.example.yaml lacks %d accepted key(s); add each with its default (commented out when it excludes another):\n  %s",
			len(missing), strings.Join(missing, "\n  "))
	}
}
