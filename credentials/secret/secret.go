// Package secret handles references to secrets in mcpauthz configuration.
//
// Secrets never appear inline in a config file. A config field that holds a
// secret is a [Ref] written as either
//
//	client_secret: {env: UPSTREAM_CLIENT_SECRET}
//	client_secret: {file: /run/secrets/upstream-client-secret}
//
// A Ref is validated without I/O ([Ref.Validate]) and resolved once, when the
// component that needs it is built ([Ref.Resolve]). The resolved [Value]
// redacts itself in every printing path (fmt, encoding/json, encoding.Text,
// YAML and log/slog); only [Value.Reveal] returns the secret.
//
// Ref and Value are immutable values and safe for concurrent use.
package secret

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// MaxFileSize is the largest secret file Resolve reads (64 KiB).
const MaxFileSize = 64 << 10

// Redacted is what a [Value] prints instead of the secret.
const Redacted = "[redacted]"

const (
	maxEnvNameLen = 256
	maxPathLen    = 4096
)

// hint is appended to decode errors so the operator knows the accepted forms.
const hint = "use {env: NAME} or {file: PATH}"

// Ref points at a secret held outside the config file: an environment
// variable (Env) or a file (File). Exactly one of the two is set in a valid,
// non-zero Ref. The zero Ref means "no secret configured".
type Ref struct {
	Env  string
	File string
}

// IsZero reports whether r references nothing.
func (r Ref) IsZero() bool { return r.Env == "" && r.File == "" }

// String describes the reference (not the secret): `env:NAME` or `file:PATH`.
func (r Ref) String() string {
	switch {
	case r.Env != "" && r.File == "":
		return "env:" + r.Env
	case r.File != "" && r.Env == "":
		return "file:" + r.File
	case r.IsZero():
		return "<none>"
	default:
		return "<invalid>"
	}
}

// UnmarshalYAML decodes a reference strictly: the node must be a mapping
// with exactly one of the keys env or file and a non-empty string value.
// A plain scalar (an inline secret) is refused without echoing it.
// Errors carry the YAML line number.
func (r *Ref) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return fmt.Errorf("secret: line %d: empty secret reference: %s", n.Line, hint)
		}
		// Never echo the scalar: it is probably the secret itself.
		return fmt.Errorf("secret: line %d: inline secrets are not allowed: %s", n.Line, hint)
	default:
		return fmt.Errorf("secret: line %d: secret reference must be a mapping: %s", n.Line, hint)
	}
	if len(n.Content) == 0 {
		return fmt.Errorf("secret: line %d: empty secret reference: %s", n.Line, hint)
	}
	var out Ref
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return fmt.Errorf("secret: line %d: secret reference keys must be env or file", k.Line)
		}
		if k.Value != "env" && k.Value != "file" {
			// Not echoed: `value: {s3cr3t}` is a mapping whose key is the secret.
			return fmt.Errorf("secret: line %d: unknown key in secret reference: %s", k.Line, hint)
		}
		if seen[k.Value] {
			return fmt.Errorf("secret: line %d: duplicate key %q in secret reference", k.Line, k.Value)
		}
		seen[k.Value] = true
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
			return fmt.Errorf("secret: line %d: %s must be a string", v.Line, k.Value)
		}
		if v.Value == "" {
			return fmt.Errorf("secret: line %d: %s must not be empty", v.Line, k.Value)
		}
		if k.Value == "env" {
			out.Env = v.Value
		} else {
			out.File = v.Value
		}
	}
	if out.Env != "" && out.File != "" {
		return fmt.Errorf("secret: line %d: secret reference sets both env and file; set exactly one", n.Line)
	}
	if err := out.Validate(); err != nil {
		return fmt.Errorf("secret: line %d: %w", n.Line, errors.Unwrap(err))
	}
	*r = out
	return nil
}

// Validate checks r without I/O: exactly one of Env and File is set, Env is
// a portable environment variable name and File is a plausible path.
func (r Ref) Validate() error {
	switch {
	case r.Env != "" && r.File != "":
		return fmt.Errorf("secret: %w", errors.New("set exactly one of env and file, not both"))
	case r.Env != "":
		if !validEnvName(r.Env) {
			return fmt.Errorf("secret: %w", fmt.Errorf("env %q is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most %d characters)", urlcheck.Truncate(r.Env, 64), maxEnvNameLen))
		}
	case r.File != "":
		if len(r.File) > maxPathLen || strings.ContainsFunc(r.File, urlcheck.IsControl) {
			return fmt.Errorf("secret: %w", errors.New("file path is too long or contains control characters"))
		}
	default:
		return fmt.Errorf("secret: %w", errors.New("empty secret reference: "+hint))
	}
	return nil
}

// Resolve reads the secret: the environment variable must be set and
// non-empty; the file must be at most [MaxFileSize] bytes and is returned
// with trailing newlines (\n, \r\n) trimmed. Errors name the variable or
// path, never the value.
func (r Ref) Resolve() (Value, error) {
	if err := r.Validate(); err != nil {
		return Value{}, err
	}
	if r.Env != "" {
		v, ok := os.LookupEnv(r.Env)
		if !ok {
			return Value{}, fmt.Errorf("secret: env var %q is not set", r.Env)
		}
		if v == "" {
			return Value{}, fmt.Errorf("secret: env var %q is empty", r.Env)
		}
		return NewValue(v), nil
	}
	f, err := os.Open(r.File)
	if err != nil {
		return Value{}, fmt.Errorf("secret: file %q: %w", r.File, pathErr(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Value{}, fmt.Errorf("secret: file %q: %w", r.File, pathErr(err))
	}
	if len(b) > MaxFileSize {
		return Value{}, fmt.Errorf("secret: file %q exceeds %d bytes", r.File, MaxFileSize)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return Value{}, fmt.Errorf("secret: file %q is empty", r.File)
	}
	return NewValue(s), nil
}

// pathErr drops the path from an *os.PathError (the caller already names it).
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Value holds a resolved secret. Every printing and encoding path yields
// [Redacted]; use [Value.Reveal] at the single point where the secret is
// sent. The secret sits behind a pointer so that even reflection-based
// printing of a struct holding a Value in an unexported field shows an
// address, not the secret. The zero Value holds the empty string.
type Value struct {
	p *string
}

// NewValue wraps s as a secret Value.
func NewValue(s string) Value { return Value{p: &s} }

// Reveal returns the secret itself. Never log or print its result.
func (v Value) Reveal() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

// IsZero reports whether v holds no secret (or the empty string).
func (v Value) IsZero() bool { return v.p == nil || *v.p == "" }

// String implements fmt.Stringer and returns [Redacted].
func (v Value) String() string { return Redacted }

// GoString implements fmt.GoStringer and returns [Redacted].
func (v Value) GoString() string { return Redacted }

// Format implements fmt.Formatter: every verb prints [Redacted].
func (v Value) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON implements json.Marshaler and encodes "[redacted]".
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler and returns [Redacted].
func (v Value) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalYAML implements yaml.Marshaler and encodes [Redacted].
func (v Value) MarshalYAML() (any, error) { return Redacted, nil }

// LogValue implements slog.LogValuer and logs [Redacted].
func (v Value) LogValue() slog.Value { return slog.StringValue(Redacted) }

var (
	_ fmt.Stringer     = Value{}
	_ fmt.GoStringer   = Value{}
	_ fmt.Formatter    = Value{}
	_ slog.LogValuer   = Value{}
	_ yaml.Marshaler   = Value{}
	_ yaml.Unmarshaler = (*Ref)(nil)
)

func validEnvName(s string) bool {
	if s == "" || len(s) > maxEnvNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
