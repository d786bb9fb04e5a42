package policy

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"sync/atomic"

	"github.com/mcpauthz/mcpauthz/internal/entrycache"
)

// preparedIDs numbers prepared principals and servers. Ids are never
// reused, so a decision cached for one principal can never be served to
// another, even if the first principal's memory is reused.
var preparedIDs atomic.Uint64

// decisionCache memoizes the decisions of one snapshot's policy. It is used
// only when the policy is deterministic and does not read input.request
// (whose id and time differ on every request). The key holds the prepared
// principal and server ids and every input.mcp field the policy reads;
// a hit is confirmed by comparing the full key. Safe for concurrent use.
type decisionCache struct {
	c            *entrycache.Batched[string, *cachedDecision]
	hits, misses atomic.Uint64
}

type cachedDecision struct {
	key string
	d   Decision
}

func newDecisionCache(size int) (*decisionCache, error) {
	c, err := entrycache.NewBatched[string, *cachedDecision](int64(size))
	if err != nil {
		return nil, err
	}
	return &decisionCache{c: c}, nil
}

// cacheKey encodes, length-prefixed, everything the decision depends on.
// ok is false when the input cannot be memoized (nothing prepared).
func (in *Input) cacheKey(u inputUse) (string, bool) {
	if in.PreparedPrincipal == nil || in.PreparedServer == nil {
		return "", false
	}
	buf := make([]byte, 0, 128+len(in.MCP.Arguments))
	buf = appendPrincipalKey(buf, in.PreparedPrincipal, u)
	buf = binary.LittleEndian.AppendUint64(buf, in.PreparedServer.id)
	m := &in.MCP
	for i := range mcpFieldNames {
		if u.mcp&(1<<i) == 0 {
			continue
		}
		var v string
		switch i {
		case 0:
			v = m.ProtocolVersion
		case 1:
			v = m.Transport
		case 2:
			v = m.SessionID
		case 3:
			buf = append(buf, boolByte(m.Batch))
			continue
		case 4:
			buf = binary.AppendUvarint(buf, uint64(m.BatchSize))
			continue
		case 5:
			v = m.Kind
		case 6:
			v = m.Method
		case 7:
			v = m.Tool
		case 8:
			v = m.Prompt
		case 9:
			v = m.URI
		case 10:
			buf = binary.AppendUvarint(buf, uint64(len(m.Arguments)))
			buf = append(buf, m.Arguments...)
			continue
		}
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	if u.connection {
		if c := in.Connection; c == nil {
			buf = append(buf, 0)
		} else {
			buf = append(buf, 1)
			for _, v := range append([]string{c.Mode, c.Status}, c.Scopes...) {
				buf = binary.AppendUvarint(buf, uint64(len(v)))
				buf = append(buf, v...)
			}
		}
	}
	return string(buf), true
}

// Principal part of the key.
//
// When the policy reads input.principal only through constant paths
// (inputUse.principal, claimNames), the key holds exactly those parts'
// values, so callers who look the same to the policy (same kind, scopes,
// roles...) share decisions: a new user's first Check is then a hit. The
// encoding is exact (length-prefixed, typed), never a hash, so two keys
// are equal only if every part the policy can read is equal. Otherwise,
// and for values this encoding does not cover, the key holds the prepared
// principal's id (one principal, one key).
const (
	keyByID      = 0
	keyByContent = 1
	// maxPrincipalKey bounds the content part; larger parts (a huge
	// roles claim) fall back to the id.
	maxPrincipalKey = 1024
	maxClaimDepth   = 16
)

// claimsBit is input.principal.claims's bit (principalBit).
var claimsBit = principalBit("claims")

func appendPrincipalKey(buf []byte, pp *PreparedPrincipal, u inputUse) []byte {
	if !u.wholePrincipal && (u.principal&claimsBit == 0 || !u.allClaims) {
		start := len(buf)
		out, ok := appendPrincipalContent(append(buf, keyByContent), &pp.p, u)
		if ok && len(out)-start <= maxPrincipalKey {
			return out
		}
		buf = out[:start]
	}
	buf = append(buf, keyByID)
	return binary.LittleEndian.AppendUint64(buf, pp.id)
}

// appendPrincipalContent encodes the fields of p the policy reads; ok is
// false when a claim's value has a type it does not encode.
func appendPrincipalContent(buf []byte, p *Principal, u inputUse) ([]byte, bool) {
	str := func(v string) {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	actor := func(a *Actor) {
		str(a.Subject)
		str(a.ClientID)
		str(a.Issuer)
	}
	for i, name := range principalFieldNames {
		if u.principal&(1<<i) == 0 {
			continue
		}
		switch name {
		case "authenticated":
			buf = append(buf, boolByte(p.Authenticated))
		case "kind":
			str(p.Kind)
		case "subject":
			str(p.Subject)
		case "user_id":
			str(p.UserID)
		case "user_key":
			str(p.UserKey)
		case "org":
			str(p.Org)
		case "issuer":
			str(p.Issuer)
		case "client_id":
			str(p.ClientID)
		case "scopes":
			buf = binary.AppendUvarint(buf, uint64(len(p.Scopes)))
			for _, s := range p.Scopes {
				str(s)
			}
		case "actor":
			buf = append(buf, boolByte(p.Actor != nil))
			if p.Actor != nil {
				actor(p.Actor)
			}
		case "chain":
			buf = binary.AppendUvarint(buf, uint64(len(p.Chain)))
			for i := range p.Chain {
				actor(&p.Chain[i])
			}
		case "spiffe_id":
			str(p.SPIFFEID)
		case "method":
			str(p.Method)
		case "claims":
			buf = append(buf, boolByte(p.Claims != nil))
			for _, n := range u.claimNames {
				v, present := p.Claims[n]
				if !present {
					buf = append(buf, 'a')
					continue
				}
				var ok bool
				if buf, ok = appendClaimValue(buf, v, 0); !ok {
					return buf, false
				}
			}
		default:
			return buf, false // a field added to the input but not here
		}
	}
	return buf, true
}

// appendClaimValue encodes a decoded claim value exactly, with a type tag;
// values that convert to equal Rego values may encode differently (which
// only loses sharing), never the reverse.
func appendClaimValue(buf []byte, v any, depth int) ([]byte, bool) {
	if depth > maxClaimDepth || len(buf) > maxPrincipalKey+64 {
		return buf, false
	}
	str := func(tag byte, s string) {
		buf = append(buf, tag)
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	switch x := v.(type) {
	case nil:
		buf = append(buf, 'n')
	case bool:
		buf = append(buf, 'f'+boolByte(x)) // 'f' or 'g'
	case string:
		str('s', x)
	case json.Number:
		str('d', string(x))
	case []string:
		buf = append(buf, 'l')
		buf = binary.AppendUvarint(buf, uint64(len(x)))
		for _, e := range x {
			str('s', e)
		}
	case []any:
		buf = append(buf, 'l')
		buf = binary.AppendUvarint(buf, uint64(len(x)))
		for _, e := range x {
			var ok bool
			if buf, ok = appendClaimValue(buf, e, depth+1); !ok {
				return buf, false
			}
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = append(buf, 'o')
		buf = binary.AppendUvarint(buf, uint64(len(keys)))
		for _, k := range keys {
			str('k', k)
			var ok bool
			if buf, ok = appendClaimValue(buf, x[k], depth+1); !ok {
				return buf, false
			}
		}
	default:
		return buf, false
	}
	return buf, true
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func (c *decisionCache) get(key string) (Decision, bool) {
	if e, ok := c.c.Get(key); ok && e.key == key {
		c.hits.Add(1)
		return e.d, true
	}
	c.misses.Add(1)
	return Decision{}, false
}

func (c *decisionCache) put(key string, d Decision) {
	c.c.Set(key, &cachedDecision{key: key, d: d})
}

// CacheStats reports decision cache hits and misses since the engine
// started serving its current policy.
type CacheStats struct{ Hits, Misses uint64 }

// DecisionCacheStats returns the current snapshot's decision cache counters
// (zero when the cache is disabled or the policy is not memoizable).
func (e *Engine) DecisionCacheStats() CacheStats {
	snap := e.snap.Load()
	if snap == nil || snap.decisions == nil {
		return CacheStats{}
	}
	return CacheStats{Hits: snap.decisions.hits.Load(), Misses: snap.decisions.misses.Load()}
}

// decisionsWait waits for pending cache writes (tests).
func (s *snapshot) decisionsWait() {
	if s.decisions != nil {
		s.decisions.c.Wait()
	}
}
