// Package decisionlog writes OPA-format decision logs: every authorization
// decision becomes an OPA decision log event (the EventV1 JSON shape of
// OPA's decision log plugin) that is either appended to a file (JSON lines,
// optionally gzip'd) or uploaded to an OPA-compatible collector (a POST of a
// gzip'd JSON array, as OPA itself does).
//
// Logging is off the hot path: [Logger.Log] only puts the event on a bounded
// queue and never blocks or does I/O; when the queue is full the event is
// dropped and counted. One background goroutine owns masking, encoding,
// batching and delivery. Uploads that fail with a server error, a timeout or
// a connection error are retried with exponential backoff and jitter (the
// queue keeps absorbing events meanwhile, dropping when full); uploads
// refused with a 4xx (or a redirect) are dropped and counted.
//
// Masks erase values (OPA "remove" semantics) on a copy: only the maps and
// slices on a masked path are copied, and the caller's values are never
// modified. The bearer token for uploads is never logged, never part of an
// error and never reported by [Logger.Stats].
package decisionlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Retry defaults used when the Options fields are zero.
const (
	DefaultMinRetryDelay = 500 * time.Millisecond
	DefaultMaxRetryDelay = 30 * time.Second
)

// drainInterval paces the writer: it wakes on a timer and drains the queue,
// so Log never has to wake a parked goroutine.
const drainInterval = 20 * time.Millisecond

// dropWarnInterval is the least time between two "events dropped" warnings.
const dropWarnInterval = 30 * time.Second

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("decisionlog: logger is closed")

// Options are the runtime dependencies of a Logger. The zero value is
// usable.
type Options struct {
	// Logger receives warnings (drops, failed uploads); default discards.
	Logger *slog.Logger
	// HTTPClient is used for uploads (output http). The Logger uses a copy
	// that never follows redirects. Default: a dedicated client.
	HTTPClient *http.Client
	// Now is the clock (default time.Now). It stamps events that have no
	// Timestamp and decides when a batch is old enough to send and when a
	// failed upload is retried.
	Now func() time.Time
	// InstanceID is the "id" label of every event (default: a random
	// UUID, as OPA does).
	InstanceID string
	// Version is the "version" label of every event (omitted when empty).
	Version string
	// MinRetryDelay and MaxRetryDelay bound the exponential backoff between
	// upload attempts (defaults 500ms and 30s).
	MinRetryDelay time.Duration
	MaxRetryDelay time.Duration

	// tick replaces the drain ticker (tests drive the writer with it).
	tick <-chan time.Time
}

// Stats are the Logger's counters since New. A snapshot taken while events
// are flowing is approximate (the counters are read one by one).
type Stats struct {
	// Logged counts events accepted by Log.
	Logged uint64
	// Uploaded counts events delivered (2xx response, or written to file).
	Uploaded uint64
	// Dropped counts events that will never be delivered: refused by Log
	// (Refused), rejected by the endpoint (4xx), failed to encode or write,
	// or still undelivered when Close gave up.
	Dropped uint64
	// Refused counts Log calls that returned false (queue full or closed);
	// it is part of Dropped.
	Refused uint64
	// FailedUploads counts failed delivery attempts (including retried
	// ones and file write errors).
	FailedUploads uint64
	// Pending is the number of accepted events neither delivered nor
	// dropped yet (queued, batched or awaiting a retry).
	Pending int
	// LastError describes the latest delivery or encoding failure ("" if
	// none). It never contains a secret.
	LastError string
}

// Logger batches and delivers decision log events. Log, Flush, Stats and
// Close are safe for concurrent use; Log must not be called concurrently
// with or after Close (such events are refused or lost, and counted).
type Logger struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	sink   sink
	masker *masker
	labels map[string]string // read-only after New

	ch       chan *Event
	closed   atomic.Bool
	refused  atomic.Uint64 // hot path: Log returned false
	received atomic.Uint64 // taken off the queue by the writer
	uploaded atomic.Uint64
	lost     atomic.Uint64 // dropped after being accepted
	failed   atomic.Uint64
	held     atomic.Int64 // events in the writer's batches
	lastErr  atomic.Pointer[string]

	flushReq  chan chan error
	stop      chan struct{}
	done      chan struct{}
	base      context.Context // canceled when Close gives up
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error // written by the writer before done is closed

	w writer // owned by the writer goroutine
}

// writer is the state of the background goroutine.
type writer struct {
	cur       *batch
	curStart  time.Time
	spare     *batch
	retry     *batch
	retryAt   time.Time
	retryWait time.Duration
	attempts  int
	scratch   bytes.Buffer
	enc       *json.Encoder
	lastWarn  time.Time
	warnedAt  uint64 // dropped total at the last warning
}

// batch is a group of encoded events: JSON lines in buf.
type batch struct {
	buf  bytes.Buffer
	n    int
	body []byte // the encoded upload, cached across retries
}

func (b *batch) reset() {
	b.buf.Reset()
	b.n = 0
	b.body = b.body[:0]
}

// sink delivers batches. deliver reports whether a failure is worth
// retrying. Only the writer goroutine calls a sink.
type sink interface {
	deliver(ctx context.Context, b *batch) (retry bool, err error)
	close() error
}

// New validates cfg, opens the output and starts the writer goroutine. ctx
// bounds construction only; the Logger runs until Close. The bearer token,
// if any, is resolved here.
func New(ctx context.Context, cfg Config, opts Options) (*Logger, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("decisionlog: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("decisionlog: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MinRetryDelay <= 0 {
		opts.MinRetryDelay = DefaultMinRetryDelay
	}
	if opts.MaxRetryDelay <= 0 {
		opts.MaxRetryDelay = DefaultMaxRetryDelay
	}
	opts.MaxRetryDelay = max(opts.MaxRetryDelay, opts.MinRetryDelay)
	if opts.InstanceID == "" {
		opts.InstanceID = newUUID()
	}
	m, err := newMasker(cfg.Mask)
	if err != nil {
		return nil, fmt.Errorf("decisionlog: mask: %w", err)
	}
	l := &Logger{
		cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now, masker: m,
		ch:       make(chan *Event, cfg.BufferEvents),
		flushReq: make(chan chan error),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	l.labels = make(map[string]string, len(cfg.Labels)+2)
	for k, v := range cfg.Labels {
		l.labels[k] = v
	}
	l.labels["id"] = opts.InstanceID
	if opts.Version != "" {
		l.labels["version"] = opts.Version
	}
	switch cfg.Output {
	case OutputFile:
		l.sink, err = newFileSink(cfg)
	case OutputHTTP:
		l.sink, err = newHTTPSink(cfg, opts)
	}
	if err != nil {
		return nil, err
	}
	l.w.cur, l.w.spare = new(batch), new(batch)
	l.w.enc = json.NewEncoder(&l.w.scratch)
	l.w.enc.SetEscapeHTML(false)
	l.base, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l, nil
}

// Log queues ev for delivery and reports whether it was accepted. It never
// blocks and does no I/O: when the queue is full the event is dropped,
// counted, and Log returns false. The Logger takes ownership of *ev: the
// caller must not modify it (or anything it points to) afterwards; values
// shared with other readers are fine, the Logger only reads them.
func (l *Logger) Log(ev *Event) bool {
	if ev == nil {
		return false
	}
	if l.closed.Load() {
		l.refused.Add(1)
		return false
	}
	select {
	case l.ch <- ev:
		return true
	default:
		l.refused.Add(1)
		return false
	}
}

// Flush delivers everything queued or batched now (a batch waiting for a
// retry gets one immediate attempt) and returns the first delivery error.
// ctx bounds the wait, not the uploads (those are bounded by the
// configured timeout).
func (l *Logger) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case l.flushReq <- reply:
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("decisionlog: flush: %w", ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("decisionlog: flush: %w", ctx.Err())
	}
}

// Close stops accepting events, delivers what is queued (retrying failed
// uploads) until done or until ctx ends, then closes the output (a file is
// fsync'd). Events still undelivered when ctx ends are counted as dropped
// and reported in the error. Close is idempotent.
func (l *Logger) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
	})
	select {
	case <-l.done:
	case <-ctx.Done():
		l.cancel() // aborts the upload in flight and further retries
		<-l.done
	}
	return l.closeErr
}

// Stats returns the counters.
func (l *Logger) Stats() Stats {
	queued := len(l.ch)
	s := Stats{
		Logged:        l.received.Load() + uint64(queued),
		Uploaded:      l.uploaded.Load(),
		Refused:       l.refused.Load(),
		FailedUploads: l.failed.Load(),
		Pending:       queued + int(l.held.Load()),
	}
	s.Dropped = s.Refused + l.lost.Load()
	if p := l.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

func (l *Logger) run() {
	defer close(l.done)
	tick := l.opts.tick
	if tick == nil {
		t := time.NewTicker(min(drainInterval, l.cfg.FlushInterval))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.stop:
			l.shutdown()
			return
		case <-tick:
			l.step()
		case reply := <-l.flushReq:
			reply <- l.flush()
		}
	}
}

// step is one timer wake-up: retry a failed batch when due, drain the
// queue into batches (sending full ones) and send a batch that is old
// enough.
func (l *Logger) step() {
	w := &l.w
	now := l.now()
	if w.retry != nil && !now.Before(w.retryAt) {
		l.send(w.retry)
	}
	if w.retry == nil {
		l.drain(now)
	}
	if w.retry == nil && w.cur.n > 0 && now.Sub(w.curStart) >= l.cfg.FlushInterval {
		l.send(w.cur)
	}
	l.warnDrops(now)
}

// flush serves Flush.
func (l *Logger) flush() error {
	w := &l.w
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	if w.retry != nil {
		if err := l.send(w.retry); err != nil {
			return err
		}
	}
	if w.retry == nil {
		keep(l.drain(l.now()))
	}
	if w.retry == nil && w.cur.n > 0 {
		keep(l.send(w.cur))
	}
	return first
}

// shutdown delivers everything (retrying) until done or l.base is
// canceled, then closes the sink.
func (l *Logger) shutdown() {
	w := &l.w
	for l.base.Err() == nil {
		switch {
		case w.retry != nil:
			t := time.NewTimer(w.retryWait)
			select {
			case <-t.C:
				l.send(w.retry)
			case <-l.base.Done():
				t.Stop()
			}
		case len(l.ch) > 0:
			l.drain(l.now())
		case w.cur.n > 0:
			l.send(w.cur)
		default:
			goto out
		}
	}
out:
	var errs []error
	abandoned := int(l.held.Load())
	for len(l.ch) > 0 {
		<-l.ch
		l.received.Add(1)
		abandoned++
	}
	if abandoned > 0 {
		l.lost.Add(uint64(abandoned))
		l.held.Store(0)
		errs = append(errs, fmt.Errorf("decisionlog: close: %d events not delivered: %w", abandoned, context.Cause(l.base)))
	}
	l.warnDrops(time.Time{}) // always report drops not yet warned about
	if err := l.sink.close(); err != nil {
		errs = append(errs, err)
	}
	l.cancel()
	l.closeErr = errors.Join(errs...)
}

// drain moves the queued events into batches, sending each batch that
// fills up; it stops early when a send fails and is to be retried. It
// returns the first delivery error.
func (l *Logger) drain(now time.Time) error {
	w := &l.w
	var first error
	for n := len(l.ch); n > 0 && w.retry == nil; n-- {
		ev := <-l.ch
		l.received.Add(1)
		line, err := l.encode(ev, now)
		if err != nil {
			l.lost.Add(1)
			l.setErr(err)
			continue
		}
		if w.cur.n > 0 && w.cur.buf.Len()+len(line)+1 > l.cfg.MaxBatchBytes {
			if err := l.send(w.cur); err != nil && first == nil {
				first = err
			}
		}
		if w.cur.n == 0 {
			w.curStart = now
		}
		w.cur.buf.Write(line)
		w.cur.n++
		l.held.Add(1)
		if w.cur.n >= l.cfg.MaxBatchEvents || w.cur.buf.Len()+1 >= l.cfg.MaxBatchBytes {
			if err := l.send(w.cur); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// encode masks and encodes one event as a JSON line (valid until the next
// encode).
func (l *Logger) encode(ev *Event, now time.Time) ([]byte, error) {
	e := *ev // private copy: the caller's Event is never modified
	if e.Timestamp.IsZero() {
		e.Timestamp = now
	}
	e.Labels = l.labels
	if len(ev.Labels) > 0 {
		e.Labels = make(map[string]string, len(l.labels)+len(ev.Labels))
		for k, v := range l.labels {
			e.Labels[k] = v
		}
		for k, v := range ev.Labels {
			e.Labels[k] = v
		}
	}
	l.masker.apply(&e)
	l.w.scratch.Reset()
	if err := l.w.enc.Encode(&e); err != nil {
		return nil, fmt.Errorf("decisionlog: encode event %q: %w", urlcheck.Truncate(ev.DecisionID, 64), err)
	}
	return l.w.scratch.Bytes(), nil
}

// send delivers b (the current batch or the retry batch). On success or
// permanent failure b's events are accounted for and b is recycled; on a
// retryable failure b becomes the retry batch. It returns the delivery
// error.
func (l *Logger) send(b *batch) error {
	w := &l.w
	ctx, cancel := context.WithTimeout(l.base, l.cfg.Timeout)
	retry, err := l.sink.deliver(ctx, b)
	cancel()
	if err == nil {
		l.uploaded.Add(uint64(b.n))
		l.held.Add(-int64(b.n))
		l.recycle(b)
		return nil
	}
	l.failed.Add(1)
	l.setErr(err)
	if retry && l.base.Err() == nil {
		if w.retry != b {
			w.retry, w.cur = b, w.spare
			w.spare = nil
			if w.cur == nil {
				w.cur = new(batch)
			}
			w.attempts = 0
			l.log.Warn("decisionlog: upload failed, will retry", "events", b.n, "error", err.Error())
		}
		w.attempts++
		w.retryWait = backoff(l.opts.MinRetryDelay, l.opts.MaxRetryDelay, w.attempts)
		w.retryAt = l.now().Add(w.retryWait)
		return err
	}
	if l.base.Err() != nil {
		// Close gave up: shutdown counts what is still held.
		return err
	}
	l.lost.Add(uint64(b.n))
	l.held.Add(-int64(b.n))
	l.log.Error("decisionlog: batch dropped", "events", b.n, "error", err.Error())
	l.recycle(b)
	return err
}

// recycle empties a sent batch for reuse.
func (l *Logger) recycle(b *batch) {
	w := &l.w
	b.reset()
	if w.retry == b {
		w.retry, w.attempts = nil, 0
		if w.spare == nil {
			w.spare = b
		}
	}
}

func (l *Logger) setErr(err error) {
	s := err.Error()
	l.lastErr.Store(&s)
}

// warnDrops logs a warning when events were dropped since the last one, at
// most once per dropWarnInterval (a zero now forces it).
func (l *Logger) warnDrops(now time.Time) {
	w := &l.w
	refused, lost := l.refused.Load(), l.lost.Load()
	total := refused + lost
	if total == w.warnedAt || (!now.IsZero() && !w.lastWarn.IsZero() && now.Sub(w.lastWarn) < dropWarnInterval) {
		return
	}
	l.log.Warn("decisionlog: events dropped", "since_last_warning", total-w.warnedAt,
		"refused_total", refused, "lost_total", lost, "pending", len(l.ch)+int(l.held.Load()))
	w.warnedAt, w.lastWarn = total, now
}

// backoff returns the delay before attempt n+1: exponential from min,
// capped at max, with jitter in [d/2, d].
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + mrand.N(d/2+1)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
