package server

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAuditLogBoundedQueue: a full queue drops and counts instead of
// blocking, and everything accepted is written as one JSON line each.
func TestAuditLogBoundedQueue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := newAuditLog(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	start := time.Now()
	for i := range n {
		a.log(&record{ID: "d", Time: start, Reason: "r", Status: 200 + i%2})
	}
	a.close()
	written, dropped := a.written.Load(), a.dropped.Load()
	if written+dropped != n {
		t.Fatalf("written %d + dropped %d != %d", written, dropped, n)
	}
	if dropped == 0 || written == 0 {
		t.Fatalf("want some dropped and some written: written %d dropped %d", written, dropped)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d is not JSON: %s", lines, sc.Text())
		}
		lines++
	}
	if uint64(lines) != written {
		t.Fatalf("file has %d lines, written counter says %d", lines, written)
	}
}
