// Package entrycache builds the ristretto caches mcpauthz bounds by a
// number of entries (tokens, prepared principals, decisions, delegated
// tokens). Every such cache is built here so they all count the same way.
//
// Ristretto adds its own per-item overhead (about 56 bytes) to the cost of
// every item unless IgnoreInternalCost is set. A cache sized "10,000
// entries" with cost 1 per item would otherwise hold about 175: the active
// callers of a busy service would fall out of it as soon as a few hundred
// one-time callers passed, and every Check would verify its token again.
package entrycache

import (
	"fmt"

	"github.com/dgraph-io/ristretto/v2"
)

// New returns a cache holding up to entries items, each Set with cost 1.
// Admission (TinyLFU) keeps frequently used entries over one-time ones.
//
// Set items without a TTL and keep their validity in the item, checked on
// every hit: ristretto files items with a TTL in per-5-second buckets that
// keep their map capacity until the TTL window passes, so memory would
// grow with the insertion rate times the TTL, not with the cache's size.
func New[K ristretto.Key, V any](entries int64) (*ristretto.Cache[K, V], error) {
	if entries <= 0 {
		return nil, fmt.Errorf("entrycache: size %d: want at least 1 entry", entries)
	}
	c, err := ristretto.NewCache(&ristretto.Config[K, V]{
		NumCounters:        10 * entries, // ristretto's advice: 10x the items held
		MaxCost:            entries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("entrycache: %w", err)
	}
	return c, nil
}
