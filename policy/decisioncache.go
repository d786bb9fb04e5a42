package policy

import (
	"encoding/binary"
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
	buf = binary.LittleEndian.AppendUint64(buf, in.PreparedPrincipal.id)
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
