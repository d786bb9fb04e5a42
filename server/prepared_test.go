package server

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
)

func testPrincipal(now time.Time, n int) *identity.Principal {
	sub := "user-" + strconv.Itoa(n)
	p := &identity.Principal{Kind: identity.KindHuman, Method: "jwt", Subject: sub, QualifiedSubject: "dev/" + sub,
		UserKey: "dev||" + sub, Issuer: "https://idp", ExpiresAt: now.Add(time.Hour)}
	p.TokenHash[0], p.TokenHash[1], p.TokenHash[2] = byte(n), byte(n>>8), byte(n>>16)
	return p
}

// TestPreparedPrincipalsAttached: a principal is prepared once however
// many Checks (concurrent or not) use it; its handle resolves only once
// published; another Service using the same Principal (one shared
// verifier) gets its own entry; a handle swept out of the full ext_proc
// table is put back by the principal's next publishing Check, and the
// table never exceeds its bound.
func TestPreparedPrincipalsAttached(t *testing.T) {
	now := time.Now()
	pp := newPreparedPrincipals(100, func() time.Time { return now })
	p := testPrincipal(now, 0)
	got := make([]*preparedEntry, 50)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = pp.get(p) })
	}
	wg.Wait()
	for i, e := range got {
		if e != got[0] || e.pp == nil {
			t.Fatalf("Check %d got entry %p, first %p", i, e, got[0])
		}
	}
	first := got[0]
	if pp.byHandle(first.handle) != nil || first.cleanup.Load() {
		t.Fatal("handle registered before it was published")
	}
	for range 3 {
		pp.publish(first)
	}
	if pp.byHandle(first.handle) != first {
		t.Fatal("handle does not resolve")
	}
	other := newPreparedPrincipals(100, func() time.Time { return now })
	if e := other.get(p); e == first || e.from != other {
		t.Error("a second Service used the first one's entry")
	}
	other.publish(first) // not its entry: refused
	if other.byHandle(first.handle) != nil {
		t.Error("a Service published another one's entry")
	}
	for i := 1; i <= 1000; i++ {
		pp.publish(pp.get(testPrincipal(now, i)))
		if n := pp.handles.len(); n > 100 {
			t.Fatalf("handle table holds %d, bound 100", n)
		}
	}
	pp.handles.drop(first.handle, first.id)
	if pp.byHandle(first.handle) != nil {
		t.Fatal("handle still resolves after removal")
	}
	if pp.get(p) != first || pp.byHandle(first.handle) != nil {
		t.Error("a Check that does not publish restored the handle")
	}
	pp.publish(pp.get(p))
	if pp.byHandle(first.handle) != first {
		t.Error("handle not restored by the next publishing Check")
	}
	// The table holds entries weakly: once the token cache lets the
	// Principal go, its entry (claims included) is collected, and the
	// entry's cleanup removes its handle.
	h := func() string {
		gone := testPrincipal(now, 6000)
		e := pp.get(gone)
		pp.publish(e)
		return e.handle
	}()
	runtime.GC()
	runtime.GC()
	if pp.byHandle(h) != nil {
		t.Error("the handle table kept an evicted principal's entry alive")
	}
	for i := 0; pp.handles.holds(h); i++ {
		if i == 200 {
			t.Fatal("a collected entry's handle is still in the table")
		}
		time.Sleep(5 * time.Millisecond)
	}
	runtime.KeepAlive(p)
	expired := testPrincipal(now, 5000)
	expired.ExpiresAt = now.Add(-time.Second)
	e := pp.get(expired)
	pp.publish(e)
	if pp.byHandle(e.handle) != nil {
		t.Error("an expired principal's handle was registered")
	}
}

// holds reports whether h is in the table at all (test helper).
func (t *handleTable) holds(h string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.m[h]
	return ok
}
