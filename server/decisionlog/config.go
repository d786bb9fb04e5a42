package decisionlog

import (
	"fmt"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Output kinds.
const (
	OutputFile = "file"
	OutputHTTP = "http"
)

// Defaults applied by New when the corresponding Config field is zero.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultFlushInterval  = time.Second
	DefaultMaxBatchEvents = 1000
	DefaultMaxBatchBytes  = 1 << 20 // uncompressed
	DefaultBufferEvents   = 10000
)

// Config configures a Logger. It is the audit.opa section of the mcpauthz
// configuration file:
//
//	audit:
//	  opa:
//	    output: http                       # or file
//	    url: https://logs.example.com/logs # POSTed gzip'd JSON arrays
//	    bearer_token: {env: DECISION_LOG_TOKEN}
//	    timeout: 10s
//	    flush_interval: 1s
//	    max_batch_events: 1000
//	    max_batch_bytes: 1048576
//	    buffer_events: 10000
//	    mask:
//	      - /input/mcp/arguments
//	      - /input/request/headers/x-api-key
//	    labels: {env: prod}
//
// The zero values of the numeric fields mean "use the default".
type Config struct {
	// Output is "file" or "http".
	Output string `yaml:"output"`
	// File is the path events are appended to (output file): JSON lines,
	// or, with Gzip, a gzip stream of one member per batch (itself JSON
	// lines once decompressed).
	File string `yaml:"file"`
	Gzip bool   `yaml:"gzip"`
	// URL receives each batch as an OPA-compatible upload: a POST of a
	// gzip'd JSON array (output http). https, or http on loopback.
	URL string `yaml:"url"`
	// BearerToken, if set, is sent as "Authorization: Bearer ..." on
	// uploads. It is never logged.
	BearerToken *secret.Ref `yaml:"bearer_token"`
	// Timeout bounds one upload (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// FlushInterval is the longest an event waits in a batch (default 1s).
	// A batch is also sent as soon as it holds MaxBatchEvents events or
	// MaxBatchBytes bytes of uncompressed JSON.
	FlushInterval  time.Duration `yaml:"flush_interval"`
	MaxBatchEvents int           `yaml:"max_batch_events"`
	MaxBatchBytes  int           `yaml:"max_batch_bytes"`
	// BufferEvents bounds the queue between Log and the writer; when it is
	// full (for example while an endpoint is down) new events are dropped
	// and counted.
	BufferEvents int `yaml:"buffer_events"`
	// Mask lists JSON pointers (RFC 6901, rooted at /input or /result) of
	// values erased before an event is written, e.g. /input/mcp/arguments.
	// Erased paths are listed in the event's "erased" field; a path that
	// does not exist in an event is ignored. Array elements are addressed
	// by index and removed from the array.
	Mask []string `yaml:"mask"`
	// Labels are added to every event's labels, next to "id" and
	// "version" (from Options).
	Labels map[string]string `yaml:"labels"`
}

// Validate checks the configuration without any I/O. All problems are
// reported at once (errors.Join), each prefixed with its field path relative
// to this Config. Errors never contain a secret.
func (c Config) Validate() error {
	var errs fielderr.List
	c.validateOutput(&errs)
	c.validateLimits(&errs)
	c.validateMaskAndLabels(&errs)
	return errs.Err()
}

// validateOutput checks output and the fields of the output it selects.
func (c Config) validateOutput(l *fielderr.List) {
	switch c.Output {
	case "":
		l.Addf("output", "required (file or http)")
	case OutputFile:
		if strings.TrimSpace(c.File) == "" {
			l.Addf("file", "required with output file")
		} else if strings.ContainsFunc(c.File, urlcheck.IsControl) {
			l.Addf("file", "contains control characters")
		}
		if c.URL != "" {
			l.Addf("url", "not allowed with output file")
		}
		if c.BearerToken != nil {
			l.Addf("bearer_token", "not allowed with output file")
		}
	case OutputHTTP:
		if c.URL == "" {
			l.Addf("url", "required with output http")
		} else if msg := checkURL(c.URL); msg != "" {
			l.Addf("url", "%s", msg)
		}
		if c.File != "" {
			l.Addf("file", "not allowed with output http")
		}
		if c.Gzip {
			l.Addf("gzip", "not allowed with output http (uploads are always gzip'd)")
		}
		if c.BearerToken != nil {
			if c.BearerToken.IsZero() {
				l.Addf("bearer_token", "empty secret reference: use {env: NAME} or {file: PATH}")
			} else if err := c.BearerToken.Validate(); err != nil {
				l.Addf("bearer_token", "%s", strings.TrimPrefix(err.Error(), "secret: "))
			}
		}
	default:
		l.Addf("output", "unknown output %q (want file or http)", urlcheck.Truncate(c.Output, 32))
	}
}

// validateLimits checks the timeout, flush interval, batch and buffer sizes.
func (c Config) validateLimits(l *fielderr.List) {
	switch {
	case c.Timeout < 0:
		l.Addf("timeout", "must not be negative, got %s", c.Timeout)
	case c.Timeout > 5*time.Minute:
		l.Addf("timeout", "must be at most 5m, got %s", c.Timeout)
	}
	switch {
	case c.FlushInterval < 0:
		l.Addf("flush_interval", "must not be negative, got %s", c.FlushInterval)
	case c.FlushInterval > 0 && c.FlushInterval < 10*time.Millisecond:
		l.Addf("flush_interval", "must be at least 10ms, got %s", c.FlushInterval)
	case c.FlushInterval > time.Hour:
		l.Addf("flush_interval", "must be at most 1h, got %s", c.FlushInterval)
	}
	for _, f := range []struct {
		path string
		v    int
	}{{"max_batch_events", c.MaxBatchEvents}, {"max_batch_bytes", c.MaxBatchBytes}, {"buffer_events", c.BufferEvents}} {
		if f.v < 0 {
			l.Addf(f.path, "must not be negative, got %d", f.v)
		}
	}
	if c.MaxBatchBytes > 0 && c.MaxBatchBytes < 1024 {
		l.Addf("max_batch_bytes", "must be at least 1024, got %d", c.MaxBatchBytes)
	}
	if c.BufferEvents > 10_000_000 {
		l.Addf("buffer_events", "must be at most 10000000, got %d", c.BufferEvents)
	}
}

// validateMaskAndLabels checks the mask pointers and the labels.
func (c Config) validateMaskAndLabels(l *fielderr.List) {
	seen := make(map[string]int, len(c.Mask))
	for i, m := range c.Mask {
		p := fmt.Sprintf("mask[%d]", i)
		if _, err := parsePointer(m); err != nil {
			l.Addf(p, "%v", err)
			continue
		}
		if j, dup := seen[m]; dup {
			l.Addf(p, "duplicates mask[%d]", j)
			continue
		}
		seen[m] = i
	}
	for k, v := range c.Labels {
		p := "labels." + urlcheck.Truncate(k, 64)
		switch {
		case k == "":
			l.Addf("labels", "label names must not be empty")
		case k == "id" || k == "version":
			l.Addf(p, "reserved (set by mcpauthz)")
		case strings.ContainsFunc(k, urlcheck.IsControl) || strings.ContainsFunc(v, urlcheck.IsControl):
			l.Addf(p, "contains control characters")
		}
	}
}

// withDefaults returns c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.BufferEvents == 0 {
		c.BufferEvents = DefaultBufferEvents
	}
	return c
}

// checkURL returns a problem with raw or "". It never echoes raw.
func checkURL(raw string) string {
	msg := urlcheck.Endpoint(raw)
	if msg == "must not contain credentials" {
		msg += " (use bearer_token)"
	}
	return msg
}
