package policy

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	DefaultQuery        = "data.mcpauthz.decision"
	DefaultPollInterval = 2 * time.Second
	// DefaultDecisionCacheSize is the decision cache bound when unset.
	DefaultDecisionCacheSize = 100000
	// DefaultStartupTimeout bounds how long New retries the first download
	// of a remote bundle that has no persisted copy.
	DefaultStartupTimeout = 30 * time.Second

	// Defaults of a remote (url) bundle source. The polling defaults are
	// OPA's (min_delay_seconds: 60, max_delay_seconds: 120).
	DefaultMinDelay       = 60 * time.Second
	DefaultMaxDelay       = 120 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultSizeLimitBytes = 64 << 20
)

// BundleSource names one OPA bundle. Exactly one of Path and URL is set.
//
// A Path is a directory in the OPA bundle layout (*.rego,
// data.json/data.yaml, optional .manifest) or a .tar.gz bundle file as
// produced by `opa build`; it is watched with fsnotify (polling as fallback).
//
// A URL is an OPA-compatible bundle server resource (a gzipped tarball
// served over HTTP(S), e.g. https://bundles.example.com/bundles/mcp.tar.gz).
// It is polled with If-None-Match after a random delay in
// [Polling.MinDelay, Polling.MaxDelay]; failures retry with exponential
// backoff and full jitter capped at MaxDelay. Redirects are followed only
// within the same origin (scheme, host and port), at most 5 of them.
//
// Files named *_test.rego are not loaded (but they are verified when the
// bundle is signed).
type BundleSource struct {
	// Name identifies the source in Status, logs and the persisted file
	// name (persist_dir/<name>.tar.gz). Must match [A-Za-z0-9._-]{1,128}
	// and be unique. Default: the base name of Path or URL without
	// .tar.gz/.tgz (other characters replaced by _), suffixed -2, -3, ...
	// on collision; set it explicitly when persist is on, so the file name
	// does not depend on the order of sources.
	Name string `yaml:"name"`
	Path string `yaml:"path"`
	URL  string `yaml:"url"`

	// Remote (url) source settings.
	Credentials *BundleCredentials `yaml:"credentials"`
	Polling     Polling            `yaml:"polling"`
	// Timeout bounds each request including reading the body (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// SizeLimitBytes bounds the downloaded tarball (default 64 MiB).
	SizeLimitBytes int64 `yaml:"size_limit_bytes"`
	// Persist keeps the last activated bundle in Config.PersistDir so the
	// engine can start from it when the bundle server is unreachable.
	Persist bool `yaml:"persist"`

	// Signing requires the bundle to carry a valid .signatures.json (the
	// format `opa build --signing-key` / `opa sign` produce). Usable on
	// path and url sources.
	Signing *Signing `yaml:"signing"`
}

// String describes the source without secrets: the URL is shown without
// user info and with its query (presigned URLs carry credentials there)
// replaced by "?...".
func (b BundleSource) String() string {
	if b.URL != "" {
		return fmt.Sprintf("bundle %s (url %s)", b.Name, displayURL(b.URL))
	}
	return fmt.Sprintf("bundle %s (path %s)", b.Name, b.Path)
}

// GoString is String, so that %#v does not print the raw URL either.
func (b BundleSource) GoString() string { return b.String() }

// BundleCredentials authenticate bundle downloads.
type BundleCredentials struct {
	Bearer *BearerCredentials `yaml:"bearer"`
}

// BearerCredentials sends "Authorization: <scheme> <token>". The token is
// resolved on every request (so a rotated token file is picked up) and never
// logged.
type BearerCredentials struct {
	Token  secret.Ref `yaml:"token"`
	Scheme string     `yaml:"scheme"` // default "Bearer"
}

// Polling configures how often a remote bundle is checked for changes.
type Polling struct {
	MinDelay time.Duration `yaml:"min_delay"` // default 60s
	MaxDelay time.Duration `yaml:"max_delay"` // default 120s
}

// Signing configures bundle signature verification (OPA's bundle signing:
// a JWT in .signatures.json listing the SHA-256 of every file).
type Signing struct {
	// Keys are the trusted public keys. The JWT's "kid" header (or the
	// deprecated keyid claim) selects one, unless KeyID forces one.
	Keys  []VerificationKey `yaml:"keys"`
	KeyID string            `yaml:"keyid"`
	// Scope must equal the JWT's scope claim (default: empty scope).
	Scope string `yaml:"scope"`
	// ExcludeFiles are glob patterns (path.Match, relative to the bundle
	// root) of files that are not verified.
	ExcludeFiles []string `yaml:"exclude_files"`
}

// VerificationKey is one trusted public key.
type VerificationKey struct {
	ID string `yaml:"id"`
	// Algorithm is one of RS256/384/512, PS256/384/512, ES256/384/512 or
	// EdDSA (default RS256). HMAC (HS*) is refused: its key is a secret.
	Algorithm string    `yaml:"algorithm"`
	PublicKey KeySource `yaml:"public_key"`
}

// KeySource is PEM text given inline (a YAML string) or read from a file
// ({file: /path/key.pem}). The PEM is a PUBLIC KEY, RSA PUBLIC KEY or
// CERTIFICATE block.
type KeySource struct {
	PEM  string
	File string
}

// UnmarshalYAML accepts a string (inline PEM) or a mapping {file: PATH}.
func (k *KeySource) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() != "!!str" || n.Value == "" {
			return fmt.Errorf("line %d: public_key must be inline PEM text or {file: PATH}", n.Line)
		}
		*k = KeySource{PEM: n.Value}
		return nil
	case yaml.MappingNode:
		if len(n.Content) != 2 || n.Content[0].Value != "file" || n.Content[1].Kind != yaml.ScalarNode || n.Content[1].Value == "" {
			return fmt.Errorf("line %d: public_key mapping must be exactly {file: PATH}", n.Line)
		}
		*k = KeySource{File: n.Content[1].Value}
		return nil
	}
	return fmt.Errorf("line %d: public_key must be inline PEM text or {file: PATH}", n.Line)
}

// Config configures an Engine. The zero value of Query and PollInterval
// means "use the default".
type Config struct {
	Bundles      []BundleSource `yaml:"bundles"`
	Query        string         `yaml:"query"`         // default "data.mcpauthz.decision"
	PollInterval time.Duration  `yaml:"poll_interval"` // default 2s; used only when fsnotify is unavailable
	// DecisionCacheSize bounds the per-policy decision cache (default
	// 100000 entries; -1 disables it). Decisions are memoized only for
	// deterministic policies, keyed by every input field the policy reads.
	DecisionCacheSize int `yaml:"decision_cache_size"`
	// PersistDir holds persisted remote bundles (<name>.tar.gz); required
	// when a source sets persist: true. Created (0700) if missing.
	PersistDir string `yaml:"persist_dir"`
	// StartupTimeout bounds how long New retries the first download of a
	// remote bundle that has no persisted copy (default 30s). With a
	// persisted copy New makes one attempt and falls back to the copy.
	StartupTimeout time.Duration `yaml:"startup_timeout"`
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// supportedAlgs are the signature algorithms accepted for bundle keys.
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// Validate checks the configuration without any I/O. All problems are
// reported at once (errors.Join), each prefixed with its field path.
func (c Config) Validate() error {
	var errs fielderr.List
	if len(c.Bundles) == 0 {
		errs.Add("bundles", "at least one bundle is required")
	}
	bc := bundleChecker{
		seenPath:   make(map[string]int, len(c.Bundles)),
		seenName:   make(map[string]int, len(c.Bundles)),
		persistDir: c.PersistDir,
	}
	for i, b := range c.Bundles {
		bc.check(i, b)
	}
	errs = append(errs, bc.errs...)
	if c.Query != "" {
		if err := validateQuery(c.Query); err != nil {
			errs = append(errs, fmt.Errorf("query: %w", err))
		}
	}
	if c.DecisionCacheSize < -1 {
		errs.Addf("decision_cache_size", "must be -1 (disabled), 0 (default) or positive, got %d", c.DecisionCacheSize)
	}
	if c.PollInterval < 0 {
		errs.Addf("poll_interval", "must not be negative, got %s", c.PollInterval)
	} else if c.PollInterval > 0 && c.PollInterval < 100*time.Millisecond {
		errs.Addf("poll_interval", "must be at least 100ms, got %s", c.PollInterval)
	}
	if c.StartupTimeout < 0 {
		errs.Addf("startup_timeout", "must not be negative, got %s", c.StartupTimeout)
	}
	return errs.Err()
}

// bundleChecker validates the bundles of a Config in order, remembering the
// paths and names seen so far to report duplicates.
type bundleChecker struct {
	seenPath   map[string]int // cleaned path -> index
	seenName   map[string]int // name -> index
	persistDir string
	errs       fielderr.List
}

// check validates bundles[i].
func (bc *bundleChecker) check(i int, b BundleSource) {
	f := fmt.Sprintf("bundles[%d]", i)
	hasPath, hasURL := strings.TrimSpace(b.Path) != "", strings.TrimSpace(b.URL) != ""
	switch {
	case hasPath && hasURL:
		bc.errs.Addf(f, "set exactly one of path and url, not both")
		return
	case !hasPath && !hasURL:
		if b.Path != "" || b.URL == "" {
			bc.errs.Addf(f+".path", "must not be empty")
		} else {
			bc.errs.Addf(f+".url", "must not be empty")
		}
		return
	case hasPath:
		if !bc.checkPath(f, i, b) {
			return
		}
	case hasURL:
		bc.errs = append(bc.errs, b.validateRemote(f)...)
	}
	if b.Signing != nil {
		bc.errs = append(bc.errs, b.Signing.validate(f+".signing")...)
	}
	if b.Name != "" {
		if !validName.MatchString(b.Name) {
			bc.errs.Addf(f+".name", "must match [A-Za-z0-9._-]{1,128}, got %q", b.Name)
		} else if j, dup := bc.seenName[b.Name]; dup {
			bc.errs.Addf(f+".name", "duplicates bundles[%d].name %q", j, b.Name)
		} else {
			bc.seenName[b.Name] = i
		}
	}
	if b.Persist && strings.TrimSpace(bc.persistDir) == "" {
		bc.errs.Addf(f+".persist", "requires persist_dir")
	}
}

// checkPath validates a path source at field f, refusing the url-only
// fields. It reports false for a duplicate path, whose other fields are not
// checked.
func (bc *bundleChecker) checkPath(f string, i int, b BundleSource) bool {
	clean := filepath.Clean(b.Path)
	if j, dup := bc.seenPath[clean]; dup {
		bc.errs.Addf(f+".path", "duplicates bundles[%d].path %q", j, b.Path)
		return false
	}
	bc.seenPath[clean] = i
	if b.Credentials != nil {
		bc.errs.Addf(f+".credentials", "only valid with url")
	}
	if b.Polling != (Polling{}) {
		bc.errs.Addf(f+".polling", "only valid with url (path sources are watched; see poll_interval)")
	}
	if b.Persist {
		bc.errs.Addf(f+".persist", "only valid with url")
	}
	if b.Timeout != 0 {
		bc.errs.Addf(f+".timeout", "only valid with url")
	}
	if b.SizeLimitBytes != 0 {
		bc.errs.Addf(f+".size_limit_bytes", "only valid with url")
	}
	return true
}

func (b BundleSource) validateRemote(f string) []error {
	var errs fielderr.List
	u, err := url.Parse(b.URL)
	switch {
	case err != nil:
		errs.Addf(f+".url", "not a URL") // the parse error may echo the URL (and a token in it)
	case u.Scheme != "https" && u.Scheme != "http":
		errs.Addf(f+".url", "scheme must be https or http, got %q", u.Scheme)
	case u.Host == "":
		errs.Addf(f+".url", "has no host")
	case u.User != nil:
		errs.Addf(f+".url", "must not contain user info; use credentials.bearer")
	case u.Fragment != "":
		errs.Addf(f+".url", "must not contain a fragment")
	}
	if b.Credentials != nil {
		switch {
		case b.Credentials.Bearer == nil:
			errs.Addf(f+".credentials", "set bearer")
		default:
			if err := b.Credentials.Bearer.Token.Validate(); err != nil {
				errs.Addf(f+".credentials.bearer.token", "%v", err)
			}
			if s := b.Credentials.Bearer.Scheme; s != "" && strings.ContainsAny(s, " \t\r\n") {
				errs.Addf(f+".credentials.bearer.scheme", "must be a single token, got %q", s)
			}
			if err == nil && u.Scheme == "http" && !urlcheck.IsLoopback(u.Hostname()) {
				errs.Addf(f+".credentials", "a bearer token requires an https url (or a loopback host)")
			}
		}
	}
	p := b.Polling
	switch {
	case p.MinDelay < 0 || p.MaxDelay < 0:
		errs.Addf(f+".polling", "delays must not be negative")
	case p.MinDelay != 0 && p.MinDelay < time.Second:
		errs.Addf(f+".polling.min_delay", "must be at least 1s, got %s", p.MinDelay)
	case p.MaxDelay != 0 && p.MaxDelay < max(p.MinDelay, time.Second):
		errs.Addf(f+".polling.max_delay", "must be at least min_delay (and 1s), got %s", p.MaxDelay)
	case p.MaxDelay == 0 && p.MinDelay > DefaultMaxDelay:
		errs.Addf(f+".polling.max_delay", "must be set when min_delay exceeds the default max_delay %s", DefaultMaxDelay)
	}
	if b.Timeout < 0 || (b.Timeout > 0 && b.Timeout < 100*time.Millisecond) {
		errs.Addf(f+".timeout", "must be at least 100ms, got %s", b.Timeout)
	}
	if b.SizeLimitBytes < 0 || (b.SizeLimitBytes > 0 && b.SizeLimitBytes < 1024) {
		errs.Addf(f+".size_limit_bytes", "must be at least 1024, got %d", b.SizeLimitBytes)
	}
	return errs
}

func (s *Signing) validate(f string) []error {
	var errs fielderr.List
	if len(s.Keys) == 0 {
		errs.Addf(f+".keys", "at least one key is required")
	}
	ids := map[string]int{}
	for i, k := range s.Keys {
		kf := fmt.Sprintf("%s.keys[%d]", f, i)
		if k.ID == "" {
			errs.Addf(kf+".id", "must not be empty")
		} else if j, dup := ids[k.ID]; dup {
			errs.Addf(kf+".id", "duplicates %s.keys[%d].id %q", f, j, k.ID)
		} else {
			ids[k.ID] = i
		}
		if k.Algorithm != "" && !supportedAlgs[k.Algorithm] {
			errs.Addf(kf+".algorithm", "unsupported %q; use RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA", k.Algorithm)
		}
		switch {
		case k.PublicKey.PEM != "" && k.PublicKey.File != "":
			errs.Addf(kf+".public_key", "set inline PEM or file, not both")
		case k.PublicKey.PEM != "":
			if _, err := ParsePublicKey([]byte(k.PublicKey.PEM)); err != nil {
				errs.Addf(kf+".public_key", "%v", err)
			}
		case k.PublicKey.File == "":
			errs.Addf(kf+".public_key", "must be inline PEM or {file: PATH}")
		}
	}
	if s.KeyID != "" {
		if _, ok := ids[s.KeyID]; !ok {
			errs.Addf(f+".keyid", "%q is not among the keys", s.KeyID)
		}
	}
	for i, p := range s.ExcludeFiles {
		if _, err := path.Match(p, ""); err != nil {
			errs.Addf(fmt.Sprintf("%s.exclude_files[%d]", f, i), "bad pattern %q", p)
		}
	}
	return errs
}

// ParsePublicKey parses a PEM PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE, the
// forms a bundle signing key may take, and returns its public key.
func ParsePublicKey(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a public key (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
}

// derivedName is the default source name: the base name of Path or URL
// without .tar.gz/.tgz, with characters outside [A-Za-z0-9._-] replaced by _.
func (b BundleSource) derivedName() string {
	base := ""
	if b.URL != "" {
		if u, err := url.Parse(b.URL); err == nil {
			base = path.Base(u.Path)
			if base == "/" || base == "." {
				base = u.Hostname()
			}
		}
	} else {
		base = filepath.Base(filepath.Clean(b.Path))
	}
	for _, ext := range []string{".tar.gz", ".tgz"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, base)
	if base == "" || base == "." || base == ".." || len(base) > 100 {
		base = "bundle"
	}
	return base
}

// assignNames gives every source a unique name: configured names are kept,
// derived names get a -2, -3, ... suffix on collision (in config order).
func assignNames(bs []BundleSource) {
	taken := map[string]bool{}
	for _, b := range bs {
		if b.Name != "" {
			taken[b.Name] = true
		}
	}
	for i := range bs {
		if bs[i].Name != "" {
			continue
		}
		base := bs[i].derivedName()
		name := base
		for n := 2; taken[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		taken[name] = true
		bs[i].Name = name
	}
}

// validateQuery accepts only a ground reference into the data document, e.g.
// data.mcpauthz.decision, so that the result is exactly one value.
func validateQuery(q string) error {
	ref, err := ast.ParseRef(q)
	if err != nil {
		return fmt.Errorf("not a reference: %q", q)
	}
	if !ref.HasPrefix(ast.DefaultRootRef) || len(ref) < 2 {
		return fmt.Errorf("must be a reference into data, e.g. %s; got %q", DefaultQuery, q)
	}
	if !ref.IsGround() {
		return fmt.Errorf("must not contain variables: %q", q)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Query == "" {
		c.Query = DefaultQuery
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.DecisionCacheSize == 0 {
		c.DecisionCacheSize = DefaultDecisionCacheSize
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = DefaultStartupTimeout
	}
	c.Bundles = append([]BundleSource(nil), c.Bundles...)
	assignNames(c.Bundles)
	for i := range c.Bundles {
		b := &c.Bundles[i]
		if b.URL == "" {
			continue
		}
		if b.Polling.MinDelay == 0 {
			b.Polling.MinDelay = DefaultMinDelay
			if b.Polling.MaxDelay != 0 {
				b.Polling.MinDelay = min(DefaultMinDelay, b.Polling.MaxDelay)
			}
		}
		if b.Polling.MaxDelay == 0 {
			b.Polling.MaxDelay = max(DefaultMaxDelay, b.Polling.MinDelay)
		}
		if b.Timeout == 0 {
			b.Timeout = DefaultRequestTimeout
		}
		if b.SizeLimitBytes == 0 {
			b.SizeLimitBytes = DefaultSizeLimitBytes
		}
	}
	return c
}
