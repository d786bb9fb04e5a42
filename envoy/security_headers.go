package envoy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// DefaultIdentityHeaderPrefix is mcpauthz's default headers.prefix.
const DefaultIdentityHeaderPrefix = "x-mcp-"

// RequiredCheckHeaders are the request headers ext_authz must show mcpauthz
// (besides every header under the identity prefix and every Mcp-Param-*
// header): the ones it reads to decide and the ones it must be able to
// strip or refuse.
var RequiredCheckHeaders = []string{
	"authorization", "proxy-authorization", "cookie", "origin", "content-type",
	"mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name",
	PartialBodyHeader,
}

// mcpParamPrefix names the 2026-07-28 parameter mirror headers.
const mcpParamPrefix = "mcp-param-"

// identitySuffixes are the attribution headers mcpauthz sets under its
// prefix, used as probes for matchers (a regex cannot be enumerated).
var identitySuffixes = []string{
	"decision-id", "server", "kind", "subject", "user", "org", "client-id",
	"actor", "actor-chain", "attribution", "x",
}

// headerProbes are the header names a header list is evaluated against:
// required ones (which must never be hidden) and others (which an
// allowed_headers list must also match, since any header may matter).
type headerProbes struct {
	required []probe
	others   []string
}

// probe is one required name or a family of names sharing a prefix.
type probe struct {
	label string   // what to report: a name or "x-mcp-*"
	names []string // concrete names to test
	// prefix, for a family: matchers of kind prefix/exact are decided on
	// it exactly rather than by the sample names.
	prefix string
}

func newHeaderProbes(o StrictOptions) headerProbes {
	prefix := strings.ToLower(o.IdentityHeaderPrefix)
	if prefix == "" {
		prefix = DefaultIdentityHeaderPrefix
	}
	var hp headerProbes
	for _, n := range RequiredCheckHeaders {
		hp.required = append(hp.required, probe{label: n, names: []string{n}})
	}
	for _, n := range o.StripHeaders {
		n = strings.ToLower(n)
		hp.required = append(hp.required, probe{label: n, names: []string{n}})
	}
	fam := func(pfx string, suffixes []string) probe {
		p := probe{label: pfx + "*", prefix: pfx}
		for _, s := range suffixes {
			p.names = append(p.names, pfx+s)
		}
		return p
	}
	hp.required = append(hp.required, fam(prefix, identitySuffixes), fam(mcpParamPrefix, []string{"id", "name", "uri", "x"}))
	hp.others = []string{
		"a", "accept", "user-agent", "x-forwarded-for", "x-request-id", "x-user-id",
		"last-event-id", "z-9", ":authority", ":path", ":method",
	}
	return hp
}

// matchResult is what a StringMatcher says about a name.
type matchResult int

const (
	noMatch matchResult = iota
	isMatch
	unknown // custom matcher or a regex Go cannot compile: cannot tell
)

// matchHeader evaluates m the way Envoy's StringMatcherImpl does on a
// (lower-case) header name: exact/prefix/suffix/contains honour
// ignore_case; safe_regex must match the whole name.
func matchHeader(m *matcherv3.StringMatcher, name string) matchResult {
	cmp := func(pattern string, f func(s, p string) bool) matchResult {
		s := name
		if m.GetIgnoreCase() {
			s, pattern = strings.ToLower(s), strings.ToLower(pattern)
		}
		if f(s, pattern) {
			return isMatch
		}
		return noMatch
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return cmp(p.Exact, func(s, p string) bool { return s == p })
	case *matcherv3.StringMatcher_Prefix:
		return cmp(p.Prefix, strings.HasPrefix)
	case *matcherv3.StringMatcher_Suffix:
		return cmp(p.Suffix, strings.HasSuffix)
	case *matcherv3.StringMatcher_Contains:
		return cmp(p.Contains, strings.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile(`^(?:` + p.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return unknown
		}
		if re.MatchString(name) {
			return isMatch
		}
		return noMatch
	}
	return unknown
}

// familyMatch decides exact and prefix matchers on a whole family of names
// (prefix pfx) and falls back to the sample names for the rest. any
// reports whether m matches some member, all whether it matches every one.
func familyMatch(m *matcherv3.StringMatcher, pr probe) (anyName, allNames, unsure bool) {
	if pr.prefix != "" && !m.GetIgnoreCase() {
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Prefix:
			// P covers the family when P is a prefix of it; it hides part of
			// it when it extends the family prefix.
			all := strings.HasPrefix(pr.prefix, p.Prefix)
			return all || strings.HasPrefix(p.Prefix, pr.prefix), all, false
		case *matcherv3.StringMatcher_Exact:
			return strings.HasPrefix(p.Exact, pr.prefix) && len(p.Exact) > len(pr.prefix), false, false
		}
	}
	allNames = true
	for _, n := range pr.names {
		switch matchHeader(m, n) {
		case isMatch:
			anyName = true
		case noMatch:
			allNames = false
		case unknown:
			unsure, allNames = true, false
		}
	}
	return anyName, allNames, unsure
}

// headerLists flags allowed_headers / disallowed_headers that hide headers
// mcpauthz reads or strips. Envoy drops a header from the CheckRequest when
// any disallowed pattern matches it, or when allowed_headers is set and no
// allowed pattern does.
func (c *checker) headerLists(ea *extauthzv3.ExtAuthz, fp string) {
	if al := ea.GetAllowedHeaders(); al != nil {
		var hidden []string
		for _, pr := range c.names.required {
			if !covers(al.GetPatterns(), pr) {
				hidden = append(hidden, pr.label)
			}
		}
		var other string
		for _, n := range c.names.others {
			if !anyPattern(al.GetPatterns(), n) {
				other = n
				break
			}
		}
		switch {
		case len(hidden) > 0:
			c.add(fp+".allowed_headers", "hides %s from mcpauthz, which then cannot refuse or strip them; remove allowed_headers or make it match every header (safe_regex \".*\")",
				strings.Join(hidden, ", "))
		case other != "":
			c.add(fp+".allowed_headers", "does not match every header (not %q): a hidden header cannot be refused or stripped by mcpauthz; remove allowed_headers or use safe_regex \".*\"", other)
		}
	}
	dl := ea.GetDisallowedHeaders()
	for i, m := range dl.GetPatterns() {
		var hidden []string
		unsure := false
		for _, pr := range c.names.required {
			anyName, _, u := familyMatch(m, pr)
			if anyName {
				hidden = append(hidden, pr.label)
			}
			unsure = unsure || u
		}
		mp := fmt.Sprintf("%s.disallowed_headers.patterns[%d]", fp, i)
		switch {
		case len(hidden) > 0:
			sort.Strings(hidden)
			c.add(mp, "hides %s from mcpauthz, which then cannot refuse or strip them", strings.Join(hidden, ", "))
		case unsure:
			c.add(mp, "cannot be checked (custom matcher or a regex Go's RE2 does not accept); it may hide headers mcpauthz must see")
		}
	}
}

func anyPattern(ms []*matcherv3.StringMatcher, name string) bool {
	for _, m := range ms {
		if matchHeader(m, name) == isMatch {
			return true
		}
	}
	return false
}

// covers reports whether the patterns together match every name of pr. A
// family is covered by one prefix pattern it starts with, or by patterns
// that are not exact names matching every sample (a regex cannot be
// enumerated, so this is as good as the samples).
func covers(ms []*matcherv3.StringMatcher, pr probe) bool {
	for _, m := range ms {
		if _, all, _ := familyMatch(m, pr); all {
			return true
		}
	}
	for _, n := range pr.names {
		matched := false
		for _, m := range ms {
			if _, exact := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact); exact && pr.prefix != "" {
				continue
			}
			if matchHeader(m, n) == isMatch {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return true
}
