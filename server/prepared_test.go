package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
)

// TestPreparedPrincipalsUnderFlood: with a table of 1,000 principals, 200
// active principals keep their prepared entries (the same pointer, no new
// conversion) and their ext_proc handles while 40,000 one-time principals
// pass, and a handle swept out of the full table is put back by its next
// Check.
func TestPreparedPrincipalsUnderFlood(t *testing.T) {
	now := time.Now()
	pp, err := newPreparedPrincipals(1000, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	defer pp.close()
	n := 0
	principal := func(sub string) *identity.Principal {
		n++
		p := &identity.Principal{Kind: identity.KindHuman, Method: "jwt", Subject: sub, QualifiedSubject: "dev/" + sub,
			UserKey: "dev||" + sub, Issuer: "https://idp", ExpiresAt: now.Add(time.Hour)}
		p.TokenHash[0], p.TokenHash[1], p.TokenHash[2] = byte(n), byte(n>>8), byte(n>>16)
		return p
	}
	active := make([]*identity.Principal, 200)
	prev := make([]*preparedEntry, len(active))
	for i := range active {
		active[i] = principal("active-" + strconv.Itoa(i))
		for range 3 {
			prev[i] = pp.get(active[i])
			pp.c.Wait()
		}
		if prev[i].pp == nil {
			t.Fatal("active principal not prepared")
		}
	}
	kept, uses := 0, 0
	for i := range 40000 {
		pp.get(principal("u" + strconv.Itoa(i)))
		if i%100 == 0 {
			pp.c.Wait() // a rate ristretto's policy goroutine keeps up with, even under -race
		}
		if i%10 == 0 {
			a := (i / 10) % len(active)
			e := pp.get(active[a])
			if e == prev[a] {
				kept++
			}
			prev[a], uses = e, uses+1
		}
		if len(pp.handles.m) > 1000 {
			t.Fatalf("handle table holds %d, bound 1000", len(pp.handles.m))
		}
	}
	// Ristretto counts uses through lossy buffers, so an active entry may
	// occasionally go (more often under -race); a table that held fewer
	// entries than configured would lose most of them.
	want := uses * 3 / 4
	if raceEnabled {
		want = uses / 10
	}
	if kept < want {
		t.Errorf("active prepared entries served from the table %d of %d times during the flood", kept, uses)
	}
	// Sweep an active handle out; its next Check puts it back.
	e := pp.get(active[0])
	pp.c.Wait()
	e = pp.get(active[0])
	delete(pp.handles.m, e.handle)
	if pp.byHandle(e.handle) != nil {
		t.Fatal("handle still resolves after removal")
	}
	if pp.get(active[0]) != e || pp.byHandle(e.handle) != e {
		t.Error("handle not restored by the next Check")
	}
}
