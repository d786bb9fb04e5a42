package entrycache

import (
	"testing"
	"time"
)

// TestHoldsConfiguredEntries: a cache of n entries keeps n items with cost
// 1 (not n / ristretto's internal overhead), and keeps a small set of hot
// entries while many more one-time keys than it holds flow through.
func TestHoldsConfiguredEntries(t *testing.T) {
	for _, n := range []int64{100, 10_000} {
		c, err := New[uint64, int](n)
		if err != nil {
			t.Fatal(err)
		}
		for k := range uint64(n) {
			c.SetWithTTL(k, int(k), 1, time.Hour)
			c.Wait()
		}
		held := 0
		for k := range uint64(n) {
			if v, ok := c.Get(k); ok && v == int(k) {
				held++
			}
		}
		if held < int(n)*95/100 {
			t.Errorf("%d-entry cache holds %d of %d items", n, held, n)
		}
		c.Close()
	}
}

func TestHotEntriesSurviveOneTimeFlood(t *testing.T) {
	if raceEnabled {
		t.Skip("skipped under -race: ristretto counts uses through sync.Pool buffers, which the race detector empties at random (TestHoldsConfiguredEntries still checks the bound)")
	}
	const size, hot, flood = 1000, 50, 50_000
	c, err := New[uint64, int](size)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	use := func(k uint64) bool {
		if _, ok := c.Get(k); ok {
			return true
		}
		c.SetWithTTL(k, 1, 1, time.Hour)
		return false
	}
	for k := range uint64(hot) {
		for range 3 {
			use(1<<40 + k)
			c.Wait()
		}
	}
	for i := range uint64(flood) {
		use(i)
		if i%20 == 0 { // each hot key comes back every 1,000 one-time keys
			use(1<<40 + (i/20)%hot)
		}
	}
	c.Wait()
	hits := 0
	for k := range uint64(hot) {
		if use(1<<40 + k) {
			hits++
		}
	}
	if hits < hot*9/10 {
		t.Errorf("%d of %d hot entries survived %d one-time keys in a %d-entry cache", hits, hot, flood, size)
	}
}

func TestRefusesEmpty(t *testing.T) {
	if _, err := New[uint64, int](0); err == nil {
		t.Error("size 0 accepted")
	}
}
