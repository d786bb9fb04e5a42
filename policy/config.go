package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	DefaultQuery        = "data.mcpauthz.decision"
	DefaultPollInterval = 2 * time.Second
	// DefaultDecisionCacheSize is the decision cache bound when unset.
	DefaultDecisionCacheSize = 100000
)

// BundleSource names one OPA bundle: a directory in the OPA bundle layout
// (*.rego, data.json/data.yaml, optional .manifest) or a .tar.gz bundle file
// as produced by `opa build`. Files named *_test.rego are not loaded.
type BundleSource struct {
	Path string `yaml:"path"`
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
}

// Validate checks the configuration without any I/O. All problems are
// reported at once (errors.Join), each prefixed with its field path.
func (c Config) Validate() error {
	var errs []error
	if len(c.Bundles) == 0 {
		errs = append(errs, errors.New("bundles: at least one bundle is required"))
	}
	seen := make(map[string]int, len(c.Bundles))
	for i, b := range c.Bundles {
		field := fmt.Sprintf("bundles[%d].path", i)
		if strings.TrimSpace(b.Path) == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", field))
			continue
		}
		clean := filepath.Clean(b.Path)
		if j, dup := seen[clean]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicates bundles[%d].path %q", field, j, b.Path))
			continue
		}
		seen[clean] = i
	}
	if c.Query != "" {
		if err := validateQuery(c.Query); err != nil {
			errs = append(errs, fmt.Errorf("query: %w", err))
		}
	}
	if c.DecisionCacheSize < -1 {
		errs = append(errs, fmt.Errorf("decision_cache_size: must be -1 (disabled), 0 (default) or positive, got %d", c.DecisionCacheSize))
	}
	if c.PollInterval < 0 {
		errs = append(errs, fmt.Errorf("poll_interval: must not be negative, got %s", c.PollInterval))
	} else if c.PollInterval > 0 && c.PollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("poll_interval: must be at least 100ms, got %s", c.PollInterval))
	}
	return errors.Join(errs...)
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
	c.Bundles = append([]BundleSource(nil), c.Bundles...)
	return c
}
