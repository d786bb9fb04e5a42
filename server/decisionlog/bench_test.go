package decisionlog

import (
	"context"
	"os"
	"testing"
	"time"
)

// benchLogger returns a Logger whose writer never runs (the test owns the
// tick), with room for n events, so Log's accept path is measured alone.
func benchLogger(b *testing.B, n int) *Logger {
	b.Helper()
	l, err := New(context.Background(), Config{Output: OutputFile, File: os.DevNull, BufferEvents: min(max(n, 1), 10_000_000)},
		Options{tick: make(chan time.Time)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // abandon what is queued: nothing to measure there
		_ = l.Close(ctx)
	})
	return l
}

// BenchmarkLog is the hot-path cost of Log (the event is built by the
// caller, outside the loop). Beyond 10M iterations the queue is full and the
// drop path is measured too: use -benchtime 5000000x for the accept path.
func BenchmarkLog(b *testing.B) {
	e := ev("d")
	l := benchLogger(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		l.Log(e)
	}
}

func BenchmarkLogParallel(b *testing.B) {
	e := ev("d")
	l := benchLogger(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(e)
		}
	})
}

// BenchmarkLogFull measures Log when the queue is full (drop and count).
func BenchmarkLogFull(b *testing.B) {
	e := ev("d")
	l := benchLogger(b, 1)
	l.Log(e)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if l.Log(e) {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkEncode is the writer's per-event cost (off the hot path): a
// typical map input, without and with masks.
func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct {
		name string
		mask []string
	}{
		{"nomask", nil},
		{"mask", []string{"/input/mcp/arguments", "/input/request/headers/x-api-key"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := benchLogger(b, 1)
			m, err := newMasker(tc.mask)
			if err != nil {
				b.Fatal(err)
			}
			l.masker = m
			e := &Event{DecisionID: "0198a3c2-5f7e-7c1a-9b2d-3e4f5a6b7c8d", Path: "mcpauthz/decision",
				Input: map[string]any{
					"request":   map[string]any{"method": "POST", "path": "/mcp", "headers": map[string]any{"x-api-key": "k", "accept": "application/json"}},
					"mcp":       map[string]any{"method": "tools/call", "tool": "search", "arguments": map[string]any{"q": "hello", "limit": 10}},
					"principal": map[string]any{"subject": "user-1", "scopes": []any{"mcp:tools"}},
				},
				Result: map[string]any{"allow": true, "reason": "ok"}, Timestamp: time.Now()}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := l.encode(e, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
