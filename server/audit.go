package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpauthz/mcpauthz/policy"
)

// record is one Check's decision log entry. It never holds a token, a
// secret or a session id in clear.
type record struct {
	ID         string    `json:"decision_id"`
	Time       time.Time `json:"time"`
	Server     string    `json:"server,omitempty"`
	HTTPMethod string    `json:"http_method,omitempty"`
	Path       string    `json:"path,omitempty"`
	Method     string    `json:"mcp_method,omitempty"`
	Tool       string    `json:"tool,omitempty"`
	URI        string    `json:"uri,omitempty"`
	Prompt     string    `json:"prompt,omitempty"`
	BatchSize  int       `json:"batch_size,omitempty"`
	Protocol   string    `json:"protocol_version,omitempty"`
	Session    string    `json:"session,omitempty"` // hash prefix, never the id
	Subject    string    `json:"subject,omitempty"`
	UserKey    string    `json:"user_key,omitempty"`
	Org        string    `json:"org,omitempty"`
	ClientID   string    `json:"client_id,omitempty"`
	Actor      string    `json:"actor,omitempty"`
	Kind       string    `json:"kind"`
	AuthMethod string    `json:"auth_method,omitempty"`
	Allow      bool      `json:"allow"`
	Status     int       `json:"status"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message,omitempty"`
	Revision   string    `json:"bundle_revision,omitempty"`
	Credential *credLog  `json:"credential,omitempty"`
	// CredentialError is the sanitized reason a credential could not be
	// obtained (never a token or secret).
	CredentialError string `json:"credential_error,omitempty"`
	LatencyUS       int64  `json:"latency_us"`

	// For the OPA-format decision log only (set when it is on).
	input *policy.Input
}

// credLog describes the upstream credential used, without its value.
type credLog struct {
	Mode     string   `json:"mode"`
	Subject  string   `json:"subject,omitempty"`
	Actor    string   `json:"actor,omitempty"`
	Audience string   `json:"audience,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
}

// auditLog writes decision records as JSON lines on its own goroutine.
// log never blocks: when the queue is full the record is dropped and
// counted. Safe for concurrent use.
type auditLog struct {
	ch      chan *record
	w       io.Writer
	closer  io.Closer
	dropped atomic.Uint64
	written atomic.Uint64
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once
}

func newAuditLog(output string, buffer int) (*auditLog, error) {
	a := &auditLog{ch: make(chan *record, buffer), done: make(chan struct{}), stop: make(chan struct{})}
	switch output {
	case "off":
		a.w = io.Discard
	case "stdout":
		a.w = os.Stdout
	case "stderr":
		a.w = os.Stderr
	default:
		f, err := os.OpenFile(output, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("server: audit output: %w", err)
		}
		a.w, a.closer = f, f
	}
	go a.run()
	return a, nil
}

func (a *auditLog) log(r *record) {
	select {
	case a.ch <- r:
	default:
		a.dropped.Add(1)
	}
}

// drainInterval paces the writer: it wakes on a timer and drains what is
// queued, so a Check's send never has to wake a parked goroutine and the
// output is written in batches. With the default buffer (8192) this carries
// ~400k decisions/s before anything is dropped.
const drainInterval = 20 * time.Millisecond

func (a *auditLog) run() {
	defer close(a.done)
	bw := bufio.NewWriterSize(a.w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	write := func(r *record) {
		if err := enc.Encode(r); err == nil {
			a.written.Add(1)
		}
	}
	tick := time.NewTicker(drainInterval)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			for { // final drain: nothing is sent after stop
				select {
				case r := <-a.ch:
					write(r)
				default:
					_ = bw.Flush()
					return
				}
			}
		case <-tick.C:
			for n := len(a.ch); n > 0; n-- {
				write(<-a.ch)
			}
			_ = bw.Flush()
		}
	}
}

// close drains the queue and closes the output. Call it once no more
// records are logged.
func (a *auditLog) close() {
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		if a.closer != nil {
			_ = a.closer.Close()
		}
	})
}
