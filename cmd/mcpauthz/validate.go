package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// cmdValidate checks a config file. With --deep it also resolves every
// secret reference (values are never printed) and compiles every local
// policy bundle, so a deployment pipeline catches what would otherwise
// fail at start.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("validate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML)")
	deep := fl.Bool("deep", false, "also resolve every secret reference and compile every local policy bundle")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return fmt.Errorf("--config is required")
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid (%d MCP servers, %d issuers, %d policy bundles)\n",
		*cfgPath, len(cfg.Servers), len(cfg.Identity.Issuers), len(cfg.Policy.Bundles))
	if !*deep {
		return nil
	}
	var problems []error
	refs := secretRefs(reflect.ValueOf(cfg).Elem(), "")
	resolved := 0
	for _, r := range refs {
		if _, err := r.ref.Resolve(); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", r.path, err))
			continue
		}
		resolved++
	}
	fmt.Fprintf(stdout, "secrets: %d of %d references resolve\n", resolved, len(refs))
	for i, b := range cfg.Policy.Bundles {
		field := fmt.Sprintf("policy.bundles[%d]", i)
		if b.Path == "" {
			fmt.Fprintf(stdout, "%s: %s is a bundle server; it is downloaded and verified at start\n", field, b)
			continue
		}
		one := cfg.Policy
		one.Bundles = []policy.BundleSource{b}
		one.DecisionCacheSize = -1
		e, err := policy.New(ctx, one, slog.New(slog.DiscardHandler))
		if err != nil {
			problems = append(problems, fmt.Errorf("%s (%s): %w", field, b.Path, err))
			continue
		}
		fmt.Fprintf(stdout, "%s: %s compiles (revision %s)\n", field, b.Path, e.Status().Revision)
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, "  "+p.Error())
		}
		return fmt.Errorf("%s: %d problem(s) found with --deep", *cfgPath, len(problems))
	}
	return nil
}

type namedRef struct {
	path string
	ref  secret.Ref
}

var refType = reflect.TypeFor[secret.Ref]()

// secretRefs finds every non-empty secret.Ref in v, named by its YAML path.
func secretRefs(v reflect.Value, path string) []namedRef {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return secretRefs(v.Elem(), path)
	case reflect.Struct:
		if v.Type() == refType {
			r := v.Interface().(secret.Ref)
			if r.IsZero() {
				return nil
			}
			return []namedRef{{path: path, ref: r}}
		}
		var out []namedRef
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			out = append(out, secretRefs(v.Field(i), p)...)
		}
		return out
	case reflect.Slice, reflect.Array:
		var out []namedRef
		for i := range v.Len() {
			out = append(out, secretRefs(v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case reflect.Map:
		var out []namedRef
		iter := v.MapRange()
		for iter.Next() {
			out = append(out, secretRefs(iter.Value(), fmt.Sprintf("%s[%v]", path, iter.Key()))...)
		}
		return out
	}
	return nil
}
