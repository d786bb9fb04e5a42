package identity

import (
	"sync"
	"testing"
)

// TestAttachMemoOnce: the first value attached wins, concurrent attachers
// all get it, and Memo reads it back.
func TestAttachMemoOnce(t *testing.T) {
	p := &Principal{Subject: "ada"}
	if p.Memo() != nil {
		t.Fatal("new principal has a memo")
	}
	got := make([]any, 64)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = p.AttachMemo(i) })
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("attacher %d got %v, attacher 0 got %v", i, got[i], got[0])
		}
	}
	if p.Memo() != got[0] || p.AttachMemo("late") != got[0] {
		t.Error("memo replaced after attach")
	}
}
