package entrycache

import (
	"sync"
	"testing"
	"time"
)

func newBatched(t *testing.T, entries int64) *Batched[uint64, int] {
	t.Helper()
	b, err := NewBatched[uint64, int](entries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// inRistretto reports whether k reached ristretto itself (not the group).
func inRistretto(b *Batched[uint64, int], k uint64) bool {
	b.c.Wait()
	v, ok := b.c.Get(k)
	return ok && v == int(k)
}

// TestBatchedHandsOverInGroups: an item is found while it waits in its
// group, reaches ristretto when the group is full, after the delay when it
// is not, or at once on Wait; Clear drops waiting items too.
func TestBatchedHandsOverInGroups(t *testing.T) {
	t.Run("pending items are found", func(t *testing.T) {
		b := newBatched(t, 1000)
		b.delay = time.Hour
		b.Set(1, 1)
		if v, ok := b.Get(1); !ok || v != 1 {
			t.Fatalf("Get(1) = %d, %v while pending", v, ok)
		}
		if inRistretto(b, 1) {
			t.Fatal("a single item was handed over before its group was full")
		}
		b.Wait()
		if !inRistretto(b, 1) {
			t.Fatal("Wait did not hand the group over")
		}
	})
	t.Run("a full group is handed over", func(t *testing.T) {
		b := newBatched(t, 1000)
		b.delay = time.Hour
		for k := range uint64(batchSize) {
			b.Set(k, int(k))
		}
		for k := range uint64(batchSize) {
			if !inRistretto(b, k) {
				t.Fatalf("item %d of a full group not in ristretto", k)
			}
		}
	})
	t.Run("the delay hands a partial group over", func(t *testing.T) {
		b := newBatched(t, 1000)
		b.delay = 10 * time.Millisecond
		b.Set(7, 7)
		deadline := time.Now().Add(5 * time.Second)
		for !inRistretto(b, 7) {
			if time.Now().After(deadline) {
				t.Fatal("a partial group was never handed over")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("Clear drops pending items", func(t *testing.T) {
		b := newBatched(t, 1000)
		b.delay = time.Hour
		b.Set(3, 3)
		b.Clear()
		if _, ok := b.Get(3); ok {
			t.Fatal("Clear kept a pending item")
		}
		b.Wait()
		if inRistretto(b, 3) {
			t.Fatal("a cleared item reached ristretto")
		}
	})
}

// TestBatchedCloseWhileSetting: Close while other goroutines Set, Flush,
// Wait and Clear neither panics (ristretto alone sends on its closed
// buffer) nor blocks, and Sets after Close are dropped.
func TestBatchedCloseWhileSetting(t *testing.T) {
	for range 20 {
		b, err := NewBatched[uint64, int](100)
		if err != nil {
			t.Fatal(err)
		}
		b.delay = time.Microsecond
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 500 {
					b.Set(uint64(g*1000+i), i)
					switch i % 50 {
					case 0:
						b.Wait()
					case 1:
						b.Flush()
					case 2:
						b.Clear()
					}
				}
			})
		}
		time.Sleep(time.Millisecond)
		b.Close()
		wg.Wait()
		b.Close()
		b.Set(1, 1)
		b.Wait()
	}
}
