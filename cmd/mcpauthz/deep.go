package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"github.com/mcpauthz/mcpauthz/credentials/mint"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/config"
	"github.com/mcpauthz/mcpauthz/server/connect"
)

// refKind is what serve does with a reference, and so what validate --deep
// checks.
type refKind int

const (
	// refSecret is a secret.Ref: resolved (env set and non-empty, file
	// readable); private keys are also parsed.
	refSecret refKind = iota
	// refPublicKey is a bundle signing key's {file: PATH}: read and parsed
	// as a PEM public key or certificate.
	refPublicKey
	// refKeyFile is a private key file of the built-in issuer: read, then
	// parsed by the issuer itself.
	refKeyFile
	// refBundle is a local policy bundle: compiled with its signing keys.
	refBundle
	// refDir is a directory created when missing.
	refDir
	// refOutput is a file created or appended to: its directory must exist.
	refOutput
)

func (k refKind) String() string {
	return [...]string{"secret", "public key file", "key file", "bundle", "directory", "output file"}[k]
}

// pathField is a plain string field of config.Config that names a file or
// directory serve opens. when reports whether serve opens it in cfg.
type pathField struct {
	kind refKind
	when func(*config.Config) bool
}

// pathFields lists, by type path, every string field that holds a path.
// TestDeepChecksEveryReference fails when a field that looks like a path
// (by its YAML name) is missing here, so a new one cannot go unchecked.
var pathFields = map[string]pathField{
	"policy.bundles[].path": {kind: refBundle},
	"policy.persist_dir": {kind: refDir, when: func(c *config.Config) bool {
		for _, b := range c.Policy.Bundles {
			if b.Persist && b.URL != "" {
				return true
			}
		}
		return false
	}},
	"issuer.keys[].file": {kind: refKeyFile},
	"store.path":         {kind: refOutput},
	"audit.output": {kind: refOutput, when: func(c *config.Config) bool {
		switch c.Audit.Output {
		case "stdout", "stderr", "off":
			return false
		}
		return true
	}},
	"audit.opa.file": {kind: refOutput},
}

// reference is one secret or path in a config that serve reads.
type reference struct {
	path  string // with indexes: servers[1].credential.static.headers[0].value
	field string // the type path: servers[].credential.static.headers[].value
	kind  refKind
	ref   secret.Ref // refSecret
	file  string     // every other kind
}

var (
	refType       = reflect.TypeFor[secret.Ref]()
	keySourceType = reflect.TypeFor[policy.KeySource]()
)

// references lists every non-empty secret and path reference in cfg that
// serve reads, in field order.
func references(cfg *config.Config) []reference {
	w := refWalker{cfg: cfg}
	w.walk(reflect.ValueOf(cfg).Elem(), "", "")
	return w.out
}

type refWalker struct {
	cfg *config.Config
	out []reference
}

func (w *refWalker) walk(v reflect.Value, path, field string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			w.walk(v.Elem(), path, field)
		}
	case reflect.Struct:
		switch v.Type() {
		case refType:
			if r := v.Interface().(secret.Ref); !r.IsZero() {
				w.out = append(w.out, reference{path: path, field: field, kind: refSecret, ref: r})
			}
			return
		case keySourceType:
			if k := v.Interface().(policy.KeySource); k.File != "" {
				w.out = append(w.out, reference{path: path, field: field, kind: refPublicKey, file: k.File})
			}
			return
		}
		for i := range v.NumField() {
			if name, ok := yamlName(v.Type().Field(i)); ok {
				w.walk(v.Field(i), joinPath(path, name), joinPath(field, name))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			w.walk(v.Index(i), path+"["+strconv.Itoa(i)+"]", field+"[]")
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := fmt.Sprint(iter.Key())
			w.walk(iter.Value(), joinPath(path, k), joinPath(field, "*"))
		}
	case reflect.String:
		pf, ok := pathFields[field]
		if !ok || v.String() == "" || (pf.when != nil && !pf.when(w.cfg)) {
			return
		}
		w.out = append(w.out, reference{path: path, field: field, kind: pf.kind, file: v.String()})
	}
}

// yamlName is the key a struct field decodes from; ok is false for fields
// YAML ignores.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(f.Name), true
	}
	return name, true
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// deepResult is what validate --deep found.
type deepResult struct {
	lines    []string // progress for stdout
	problems []error  // each names its field path
}

// deepCheck resolves every reference serve reads and compiles every local
// bundle, as serve would at start, without listening, downloading or
// writing anything.
func deepCheck(ctx context.Context, cfg *config.Config) deepResult {
	var res deepResult
	refs := references(cfg)
	counts := map[bool][2]int{} // secret? -> {ok, total}
	for _, r := range refs {
		isSecret := r.kind == refSecret
		c := counts[isSecret]
		c[1]++
		var err error
		switch r.kind {
		case refSecret:
			err = checkSecret(r)
		case refBundle:
			err = compileBundle(ctx, cfg, r, &res)
		default:
			err = checkPath(r)
		}
		if err != nil {
			res.problems = append(res.problems, fmt.Errorf("%s: %w", r.path, err))
		} else {
			c[0]++
		}
		counts[isSecret] = c
	}
	s, f := counts[true], counts[false]
	res.lines = append([]string{
		fmt.Sprintf("secrets: %d of %d references resolve", s[0], s[1]),
		fmt.Sprintf("files: %d of %d file and bundle references check out", f[0], f[1]),
	}, res.lines...)
	for i, b := range cfg.Policy.Bundles {
		if b.URL != "" {
			res.lines = append(res.lines, fmt.Sprintf("policy.bundles[%d]: %s is a bundle server; it is downloaded and verified at start", i, b))
		}
	}
	if len(res.problems) == 0 {
		res.problems = append(res.problems, checkKeyMaterial(ctx, cfg)...)
	}
	return res
}

// secretFormats are the secrets serve parses, by the end of their type
// path, with what it accepts. (The store's keys are parsed by its own
// loader in checkKeyMaterial.)
var secretFormats = map[string]func(string) error{
	".private_key": func(v string) error {
		if _, err := exchange.ParsePrivateKey([]byte(v)); err != nil {
			return fmt.Errorf("not a usable private key: %w", err)
		}
		return nil
	},
	"connect.cookie_key": func(v string) error {
		v = strings.TrimSpace(v)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if k, err := enc.DecodeString(v); err == nil && len(k) == connect.CookieKeySize {
				return nil
			}
		}
		return fmt.Errorf("must be %d bytes, base64-encoded (e.g. `openssl rand -base64 32`)", connect.CookieKeySize)
	},
}

func checkSecret(r reference) error {
	v, err := r.ref.Resolve()
	if err != nil {
		return err
	}
	for suffix, check := range secretFormats {
		if strings.HasSuffix(r.field, suffix) {
			if err := check(v.Reveal()); err != nil {
				return fmt.Errorf("%s: %w", r.ref, err)
			}
		}
	}
	return nil
}

// maxKeyFile bounds the key files --deep reads (serve's own bound).
const maxKeyFile = mint.MaxKeyFileSize

func checkPath(r reference) error {
	switch r.kind {
	case refPublicKey:
		b, err := readBounded(r.file)
		if err != nil {
			return err
		}
		_, err = policy.ParsePublicKey(b)
		return err
	case refKeyFile:
		_, err := readBounded(r.file)
		return err
	case refDir:
		return creatableDir(r.file)
	case refOutput:
		return writableFile(r.file)
	}
	return fmt.Errorf("no check for %s", r.kind)
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxKeyFile)
	}
	return b, nil
}

// creatableDir: dir is a directory, or its nearest existing ancestor is
// one (serve creates the rest).
func creatableDir(dir string) error {
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			return nil
		case err == nil:
			return fmt.Errorf("%s: %s is not a directory", dir, p)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		case filepath.Dir(p) == p:
			return err
		}
	}
}

// writableFile: an existing file opens for appending (nothing is written),
// otherwise its directory exists.
func writableFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory of %s: %w", path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// compileBundle builds the policy engine on one local bundle, with the
// configured signing keys, exactly as serve does.
func compileBundle(ctx context.Context, cfg *config.Config, r reference, res *deepResult) error {
	i := bundleIndex(r.path)
	b := cfg.Policy.Bundles[i]
	one := cfg.Policy
	one.Bundles = []policy.BundleSource{b}
	one.DecisionCacheSize = -1
	e, err := policy.New(ctx, one, slog.New(slog.DiscardHandler))
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "policy: "))
	}
	res.lines = append(res.lines, fmt.Sprintf("policy.bundles[%d]: %s compiles (revision %s)", i, b.Path, e.Status().Revision))
	return nil
}

// bundleIndex reads N from "policy.bundles[N].path".
func bundleIndex(path string) int {
	s := strings.TrimPrefix(path, "policy.bundles[")
	n, _ := strconv.Atoi(s[:strings.IndexByte(s, ']')])
	return n
}

// checkKeyMaterial parses what resolved: the store's encryption keys and
// the issuer's key files, through the code serve uses.
func checkKeyMaterial(ctx context.Context, cfg *config.Config) []error {
	var errs []error
	if len(cfg.Store.Encryption.Keys) > 0 {
		if _, err := store.LoadKeyRing(cfg.Store.Encryption); err != nil {
			errs = append(errs, reprefix("store", err))
		}
	}
	if cfg.Issuer != nil && len(cfg.Issuer.Keys) > 0 {
		if _, err := mint.New(ctx, *cfg.Issuer, mint.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
			errs = append(errs, reprefix("issuer", err))
		}
	}
	return errs
}

// reprefix turns a package's "pkg: field: msg" into "block.field: msg".
func reprefix(block string, err error) error {
	msg := err.Error()
	for _, p := range []string{"store: ", "mint: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if strings.HasPrefix(msg, "keys[") || strings.HasPrefix(msg, "encryption.") {
		return errors.New(block + "." + msg)
	}
	return errors.New(block + ": " + msg)
}
