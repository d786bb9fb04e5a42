package decisionlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func TestEventJSONIsOPAEventV1(t *testing.T) {
	ts := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	e := Event{
		Labels: map[string]string{"id": "i1", "version": "v"}, DecisionID: "d1",
		TraceID: "t1", SpanID: "s1",
		Bundles: map[string]BundleInfo{"authz": {Revision: "rev7"}},
		Path:    "mcpauthz/decision", Query: "data.mcpauthz.decision",
		Input: map[string]any{"a": 1}, Result: map[string]any{"allow": false},
		Erased: []string{"/input/x"}, Masked: []string{"/input/y"},
		RequestedBy: "10.0.0.1:5000", Timestamp: ts,
		Metrics: map[string]any{"timer_rego_query_eval_ns": 1200}, RequestID: 42,
		Custom: map[string]any{"k": "v"},
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var o opaEvent
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		t.Fatalf("decode as OPA EventV1: %v\n%s", err, b)
	}
	if o.DecisionID != "d1" || o.TraceID != "t1" || o.SpanID != "s1" || o.Path != "mcpauthz/decision" ||
		o.Query != "data.mcpauthz.decision" || o.RequestedBy != "10.0.0.1:5000" || o.RequestID != 42 ||
		!o.Timestamp.Equal(ts) || o.Bundles["authz"].Revision != "rev7" || o.Labels["id"] != "i1" {
		t.Fatalf("decoded %+v", o)
	}
	if o.Input == nil || (*o.Input).(map[string]any)["a"] != 1.0 || o.Result == nil ||
		(*o.Result).(map[string]any)["allow"] != false {
		t.Fatalf("input/result = %v / %v", o.Input, o.Result)
	}
	if !slices.Equal(o.Erased, []string{"/input/x"}) || !slices.Equal(o.Masked, []string{"/input/y"}) ||
		o.Metrics["timer_rego_query_eval_ns"] != 1200.0 || o.Custom["k"] != "v" {
		t.Fatalf("decoded %+v", o)
	}
	if !strings.Contains(string(b), `"timestamp":"2025-06-01T12:00:00.123456789Z"`) {
		t.Fatalf("timestamp not RFC 3339 nano: %s", b)
	}
	// Empty optional fields are omitted, as in OPA.
	b, _ = json.Marshal(Event{DecisionID: "d"})
	if got, want := string(b), `{"labels":null,"decision_id":"d","timestamp":"0001-01-01T00:00:00Z"}`; got != want {
		t.Fatalf("minimal event = %s, want %s", got, want)
	}
}

// TestEventFieldsMatchOPASource checks Event's and the test mirror's JSON
// names against OPA's EventV1 source in the module cache.
func TestEventFieldsMatchOPASource(t *testing.T) {
	modfile, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Skipf("go.mod: %v", err)
	}
	m := regexp.MustCompile(`github.com/open-policy-agent/opa (v\S+)`).FindSubmatch(modfile)
	if m == nil {
		t.Skip("opa not in go.mod")
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "github.com/open-policy-agent/opa@"+string(m[1]), "v1/plugins/logs/plugin.go")
	f, err := parser.ParseFile(token.NewFileSet(), src, nil, 0)
	if err != nil {
		t.Skipf("OPA source not available: %v", err)
	}
	opa := map[string]string{} // json name -> tag
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "EventV1" {
			return true
		}
		for _, fl := range ts.Type.(*ast.StructType).Fields.List {
			if fl.Tag == nil {
				continue
			}
			tag := reflect.StructTag(strings.Trim(fl.Tag.Value, "`")).Get("json")
			opa[strings.Split(tag, ",")[0]] = tag
		}
		return false
	})
	if len(opa) < 20 {
		t.Fatalf("found only %d EventV1 fields in %s", len(opa), src)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Event](), reflect.TypeFor[opaEvent]()} {
		for i := range typ.NumField() {
			tag := typ.Field(i).Tag.Get("json")
			name := strings.Split(tag, ",")[0]
			if _, ok := opa[name]; !ok {
				t.Errorf("%s.%s: json name %q is not an OPA EventV1 field", typ.Name(), typ.Field(i).Name, name)
			}
			if typ == reflect.TypeFor[opaEvent]() && tag != opa[name] {
				t.Errorf("opaEvent.%s tag %q, OPA has %q", typ.Field(i).Name, tag, opa[name])
			}
		}
	}
}

func TestBatchingByCount(t *testing.T) {
	c := newCollector(t, nil)
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL, MaxBatchEvents: 2, FlushInterval: time.Minute}, Options{})
	for i := range 5 {
		if !d.Log(ev(fmt.Sprint("d", i))) {
			t.Fatalf("Log %d refused", i)
		}
	}
	d.step()
	if got := sizes(c.accepted()); !slices.Equal(got, []int{2, 2}) {
		t.Fatalf("batches = %v, want [2 2]", got)
	}
	if s := d.Stats(); s.Pending != 1 || s.Uploaded != 4 || s.Logged != 5 {
		t.Fatalf("stats = %+v", s)
	}
	d.clock.Advance(time.Minute)
	d.step()
	if got := ids(c.accepted()); !slices.Equal(got, []string{"d0", "d1", "d2", "d3", "d4"}) {
		t.Fatalf("ids = %v", got)
	}
	if s := d.Stats(); s.Pending != 0 || s.Uploaded != 5 || s.Dropped != 0 || s.FailedUploads != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestBatchingByBytes(t *testing.T) {
	c := newCollector(t, nil)
	const limit = 1024
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL, MaxBatchBytes: limit}, Options{})
	for i := range 10 {
		e := ev(fmt.Sprint("d", i))
		e.Input = map[string]any{"pad": strings.Repeat("x", 300)}
		d.Log(e)
	}
	d.step()
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ups := c.all()
	if len(ups) < 4 {
		t.Fatalf("%d uploads, want at least 4 for 10 events of ~400 bytes", len(ups))
	}
	total := 0
	for i, u := range ups {
		if len(u.raw) > limit {
			t.Errorf("upload %d is %d bytes uncompressed, limit %d", i, len(u.raw), limit)
		}
		total += len(u.events)
	}
	if got := ids(c.accepted()); total != 10 || len(got) != 10 || got[0] != "d0" || got[9] != "d9" {
		t.Fatalf("ids = %v", got)
	}
}

func TestBatchingByInterval(t *testing.T) {
	c := newCollector(t, nil)
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL, FlushInterval: time.Hour}, Options{})
	for i := range 3 {
		d.Log(ev(fmt.Sprint("d", i)))
	}
	d.step()
	if n := len(c.all()); n != 0 {
		t.Fatalf("%d uploads before the interval", n)
	}
	if s := d.Stats(); s.Pending != 3 {
		t.Fatalf("pending = %d, want 3", s.Pending)
	}
	d.clock.Advance(59 * time.Minute)
	d.step()
	if n := len(c.all()); n != 0 {
		t.Fatalf("%d uploads before the interval", n)
	}
	d.clock.Advance(time.Minute)
	d.step()
	if got := sizes(c.accepted()); !slices.Equal(got, []int{3}) {
		t.Fatalf("batches = %v, want [3]", got)
	}
}

func TestLabelsAndTimestamp(t *testing.T) {
	c := newCollector(t, nil)
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL, Labels: map[string]string{"env": "prod"}},
		Options{InstanceID: "inst-1", Version: "1.2.3"})
	ts := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	e1 := ev("d1")
	e1.Timestamp = ts
	e2 := ev("d2")
	e2.Labels = map[string]string{"env": "staging", "shard": "7"}
	d.Log(e1)
	d.Log(e2)
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.accepted()[0]
	if want := map[string]string{"id": "inst-1", "version": "1.2.3", "env": "prod"}; !reflect.DeepEqual(got[0].Labels, want) {
		t.Errorf("labels = %v, want %v", got[0].Labels, want)
	}
	if want := map[string]string{"id": "inst-1", "version": "1.2.3", "env": "staging", "shard": "7"}; !reflect.DeepEqual(got[1].Labels, want) {
		t.Errorf("labels = %v, want %v", got[1].Labels, want)
	}
	if !got[0].Timestamp.Equal(ts) || !got[1].Timestamp.Equal(d.clock.Now()) {
		t.Errorf("timestamps = %v, %v", got[0].Timestamp, got[1].Timestamp)
	}
	if e2.Labels["id"] != "" || len(e2.Labels) != 2 || !e2.Timestamp.IsZero() || e1.Erased != nil {
		t.Errorf("caller's event was modified: %+v", e2)
	}
	if ua := c.all()[0].header.Get("User-Agent"); ua != "mcpauthz/1.2.3" {
		t.Errorf("User-Agent = %q", ua)
	}
	// Without InstanceID a UUID is generated.
	l, err := New(context.Background(), Config{Output: OutputFile, File: filepath.Join(t.TempDir(), "x")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	if id := l.labels["id"]; !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("generated id %q is not a UUIDv4", id)
	}
	if _, ok := l.labels["version"]; ok {
		t.Errorf("version label set without Options.Version")
	}
}

func TestMaskedEventsOverHTTP(t *testing.T) {
	c := newCollector(t, nil)
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL,
		Mask: []string{"/input/mcp/arguments", "/input/request/headers/x-api-key", "/input/absent"}}, Options{})
	in := map[string]any{
		"mcp":     map[string]any{"tool": "search", "arguments": map[string]any{"q": "secret stuff"}},
		"request": map[string]any{"headers": map[string]any{"x-api-key": "k-123", "accept": "*/*"}},
	}
	e := &Event{DecisionID: "d1", Input: in}
	d.Log(e)
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.accepted()[0][0]
	if !slices.Equal(got.Erased, []string{"/input/mcp/arguments", "/input/request/headers/x-api-key"}) {
		t.Errorf("erased = %v", got.Erased)
	}
	want := map[string]any{
		"mcp":     map[string]any{"tool": "search"},
		"request": map[string]any{"headers": map[string]any{"accept": "*/*"}},
	}
	if !reflect.DeepEqual(*got.Input, any(want)) {
		t.Errorf("input = %v, want %v", *got.Input, want)
	}
	if in["mcp"].(map[string]any)["arguments"] == nil || in["request"].(map[string]any)["headers"].(map[string]any)["x-api-key"] != "k-123" || e.Erased != nil {
		t.Errorf("caller's input was modified: %v", in)
	}
}

func TestBufferOverflowDropsWithoutBlocking(t *testing.T) {
	c := newCollector(t, nil)
	c.hang = make(chan struct{})
	t.Cleanup(func() { close(c.hang) }) // runs before the server closes
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL, BufferEvents: 4, MaxBatchEvents: 1, Timeout: time.Minute}, Options{})
	d.Log(ev("first"))
	d.tick <- time.Time{} // the writer takes "first" and hangs in the upload
	// Pending counts "first" once the writer holds it in a batch, a moment
	// after it left the channel.
	waitFor(t, "the upload to start", func() bool { s := d.Stats(); return s.Logged == 1 && len(d.ch) == 0 && s.Pending == 1 })

	done := make(chan [2]int)
	go func() {
		var ok, refused int
		for i := range 100 {
			if d.Log(ev(fmt.Sprint("e", i))) {
				ok++
			} else {
				refused++
			}
		}
		done <- [2]int{ok, refused}
	}()
	var res [2]int
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked while the endpoint hangs")
	}
	if res != [2]int{4, 96} {
		t.Fatalf("accepted, refused = %v, want [4 96]", res)
	}
	s := d.Stats()
	if s.Refused != 96 || s.Dropped != 96 || s.Logged != 5 || s.Pending != 5 || s.Uploaded != 0 {
		t.Fatalf("stats = %+v", s)
	}
	// Close gives up when its context ends: the rest is counted as dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := d.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "5 events not delivered") {
		t.Fatalf("Close = %v, want 5 events not delivered", err)
	}
	s = d.Stats()
	if s.Dropped != 101 || s.Pending != 0 || s.Uploaded != 0 || s.Logged != 5 {
		t.Fatalf("stats after Close = %+v", s)
	}
	if d.Log(ev("late")) {
		t.Fatal("Log accepted an event after Close")
	}
	if s := d.Stats(); s.Refused != 97 {
		t.Fatalf("refused after Close = %d, want 97", s.Refused)
	}
}

func TestRetryAfter503DeliversOnce(t *testing.T) {
	c := newCollector(t, func(n int, _ *http.Request) (int, string) {
		if n < 2 {
			return http.StatusServiceUnavailable, "busy"
		}
		return http.StatusOK, ""
	})
	var logs logBuf
	l, err := New(context.Background(), Config{Output: OutputHTTP, URL: c.srv.URL, FlushInterval: 10 * time.Millisecond},
		Options{MinRetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	for i := range 3 {
		l.Log(ev(fmt.Sprint("d", i)))
	}
	waitFor(t, "delivery", func() bool { return l.Stats().Uploaded == 3 })
	if got := ids(c.accepted()); !slices.Equal(got, []string{"d0", "d1", "d2"}) {
		t.Fatalf("accepted ids = %v, want each once", got)
	}
	ups := c.all()
	if len(ups) != 3 || ups[0].status != 503 || ups[1].status != 503 || ups[2].status != 200 {
		t.Fatalf("uploads = %d", len(ups))
	}
	if !bytes.Equal(ups[0].raw, ups[2].raw) {
		t.Errorf("retried body differs from the first attempt")
	}
	s := l.Stats()
	if s.FailedUploads != 2 || s.Dropped != 0 || s.Pending != 0 || !strings.Contains(s.LastError, "HTTP 503: busy") {
		t.Fatalf("stats = %+v", s)
	}
	if n := strings.Count(logs.String(), "will retry"); n != 1 {
		t.Errorf("%d retry warnings, want 1 per batch:\n%s", n, logs.String())
	}
}

func TestRetryWhileDownThenClose(t *testing.T) {
	var mu sync.Mutex
	up := false
	c := newCollector(t, func(int, *http.Request) (int, string) {
		mu.Lock()
		defer mu.Unlock()
		if up {
			return http.StatusOK, ""
		}
		return http.StatusBadGateway, ""
	})
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL, MaxBatchEvents: 2, BufferEvents: 3},
		Options{MinRetryDelay: time.Hour, MaxRetryDelay: time.Hour})
	d.Log(ev("a"))
	d.Log(ev("b"))
	d.step() // batch [a b] fails and waits for a retry
	for _, id := range []string{"c", "d", "e", "f"} {
		d.Log(ev(id)) // queue of 3: f is refused
	}
	d.step() // retry not due: nothing drained
	s := d.Stats()
	if s.Refused != 1 || s.Pending != 5 || s.FailedUploads != 1 || s.Uploaded != 0 {
		t.Fatalf("stats = %+v", s)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	d.clock.Advance(2 * time.Hour)
	d.step()
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ids(c.accepted()); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("ids = %v", got)
	}
}

func TestClientErrorDropsBatch(t *testing.T) {
	long := "bad request: " + strings.Repeat("z", 1000)
	c := newCollector(t, func(n int, _ *http.Request) (int, string) {
		if n == 0 {
			return http.StatusBadRequest, long
		}
		return http.StatusOK, ""
	})
	var logs logBuf
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL + "/logs?tenant=t1"},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	d.Log(ev("a"))
	d.Log(ev("b"))
	err := d.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP 400: bad request: zzz") {
		t.Fatalf("Flush = %v", err)
	}
	if strings.Contains(err.Error(), strings.Repeat("z", 201)) || strings.Contains(err.Error(), "tenant=t1") {
		t.Fatalf("error quotes too much: %v", err)
	}
	s := d.Stats()
	if s.Dropped != 2 || s.FailedUploads != 1 || s.Uploaded != 0 || s.Pending != 0 || s.Refused != 0 {
		t.Fatalf("stats = %+v", s)
	}
	if n := strings.Count(logs.String(), "batch dropped"); n != 1 || !strings.Contains(logs.String(), "HTTP 400") {
		t.Fatalf("want one log line with the status:\n%s", logs.String())
	}
	d.Log(ev("c"))
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ids(c.accepted()); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("ids = %v", got)
	}
	if len(c.all()) != 2 {
		t.Fatalf("the 400'd batch was retried")
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newCollector(t, nil)
	c := newCollector(t, nil)
	c.srv.Config.Handler = http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect)
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL}, Options{})
	d.Log(ev("a"))
	err := d.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP 307 (redirects are not followed)") {
		t.Fatalf("Flush = %v", err)
	}
	if len(target.all()) != 0 {
		t.Fatal("redirect was followed")
	}
	if s := d.Stats(); s.Dropped != 1 || s.FailedUploads != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCloseFlushes(t *testing.T) {
	c := newCollector(t, nil)
	l, err := New(context.Background(), Config{Output: OutputHTTP, URL: c.srv.URL, FlushInterval: time.Hour}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		l.Log(ev(fmt.Sprint("d", i)))
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := ids(c.accepted()); !slices.Equal(got, []string{"d0", "d1", "d2"}) {
		t.Fatalf("ids = %v", got)
	}
	if s := l.Stats(); s.Uploaded != 3 || s.Pending != 0 || s.Logged != 3 {
		t.Fatalf("stats = %+v", s)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := l.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}
}

func TestFileOutput(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprint("gzip=", gz), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "decisions.log")
			if err := os.WriteFile(path, nil, 0o600); err != nil { // appended to
				t.Fatal(err)
			}
			d := newDriven(t, Config{Output: OutputFile, File: path, Gzip: gz, Mask: []string{"/input/mcp"}}, Options{})
			d.Log(ev("a"))
			d.Log(ev("b"))
			if err := d.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			d.Log(ev("c"))
			if err := d.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if gz {
				// One gzip member per batch.
				br := bytes.NewReader(raw)
				zr, err := gzip.NewReader(br)
				if err != nil {
					t.Fatal(err)
				}
				members := 0
				var all bytes.Buffer
				for {
					zr.Multistream(false)
					if _, err := io.Copy(&all, zr); err != nil {
						t.Fatal(err)
					}
					members++
					if err := zr.Reset(br); err == io.EOF {
						break
					} else if err != nil {
						t.Fatal(err)
					}
				}
				if members != 2 {
					t.Errorf("%d gzip members, want 2", members)
				}
				raw = all.Bytes()
			}
			var got []string
			sc := bufio.NewScanner(bytes.NewReader(raw))
			for sc.Scan() {
				var o opaEvent
				dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&o); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				if !slices.Equal(o.Erased, []string{"/input/mcp"}) || o.Input == nil || len((*o.Input).(map[string]any)) != 0 {
					t.Errorf("event %s not masked: %s", o.DecisionID, sc.Text())
				}
				got = append(got, o.DecisionID)
			}
			if !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Fatalf("ids = %v\n%s", got, raw)
			}
			if s := d.Stats(); s.Uploaded != 3 || s.Dropped != 0 {
				t.Fatalf("stats = %+v", s)
			}
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode = %v, %v", fi.Mode(), err)
			}
		})
	}
}

func TestFileWriteErrorCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	d := newDriven(t, Config{Output: OutputFile, File: path}, Options{})
	_ = d.sink.(*fileSink).f.Close() // make writes fail
	d.Log(ev("a"))
	err := d.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "decisionlog: write "+path) {
		t.Fatalf("Flush = %v", err)
	}
	if s := d.Stats(); s.Dropped != 1 || s.FailedUploads != 1 || s.Pending != 0 || s.LastError == "" {
		t.Fatalf("stats = %+v", s)
	}
}

func TestBearerTokenNeverLeaks(t *testing.T) {
	const token = "tok_S3CR3T_value_9f8e7d"
	t.Setenv("DL_TEST_TOKEN", token)
	c := newCollector(t, func(_ int, r *http.Request) (int, string) {
		// A misbehaving endpoint that echoes the credential.
		return http.StatusUnauthorized, "denied: " + r.Header.Get("Authorization")
	})
	var logs logBuf
	opts := Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	cfg := Config{Output: OutputHTTP, URL: c.srv.URL, BearerToken: &secret.Ref{Env: "DL_TEST_TOKEN"}}
	d := newDriven(t, cfg, opts)
	d.Log(ev("a"))
	err := d.Flush(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP 401: denied: Bearer [redacted]") {
		t.Fatalf("Flush = %v", err)
	}
	if got := c.all()[0].header.Get("Authorization"); got != "Bearer "+token {
		t.Fatalf("Authorization = %q", got)
	}
	// A connection error.
	cfg.URL = "http://127.0.0.1:1/logs"
	d2 := newDriven(t, cfg, opts)
	d2.Log(ev("b"))
	err2 := d2.Flush(context.Background())
	if err2 == nil {
		t.Fatal("upload to a closed port succeeded")
	}
	// The batch awaits a retry; Close gives up when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := d2.Close(ctx); err == nil || !strings.Contains(err.Error(), "1 events not delivered") {
		t.Fatalf("Close = %v", err)
	}
	_ = d.Close(context.Background())
	for what, s := range map[string]string{
		"flush error": err.Error(), "conn error": err2.Error(), "logs": logs.String(),
		"stats": fmt.Sprintf("%+v %+v", d.Stats(), d2.Stats()), "logger": fmt.Sprintf("%+v %#v", d.Logger, d.sink),
		"config": fmt.Sprintf("%+v %#v", cfg, cfg),
	} {
		if strings.Contains(s, token) || strings.Contains(s, "S3CR3T") {
			t.Errorf("%s contains the token: %s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "batch dropped") {
		t.Errorf("nothing logged: %s", logs.String())
	}
	// A missing token is reported by name, at New.
	_, err = New(context.Background(), Config{Output: OutputHTTP, URL: c.srv.URL, BearerToken: &secret.Ref{Env: "DL_TEST_UNSET_VAR"}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "DL_TEST_UNSET_VAR") {
		t.Fatalf("New = %v", err)
	}
}

func TestDropWarningIsRateLimited(t *testing.T) {
	var logs logBuf
	d := newDriven(t, Config{Output: OutputFile, File: filepath.Join(t.TempDir(), "x"), BufferEvents: 1},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	d.Log(ev("a"))
	d.Log(ev("b")) // refused
	d.step()
	d.Log(ev("c"))
	d.Log(ev("d")) // refused, within the interval: no second warning yet
	d.step()
	if n := strings.Count(logs.String(), "events dropped"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
	d.clock.Advance(dropWarnInterval)
	d.step()
	if n := strings.Count(logs.String(), "events dropped"); n != 2 || !strings.Contains(logs.String(), "refused_total=2") {
		t.Fatalf("want a second warning with refused_total=2:\n%s", logs.String())
	}
}

// logBuf collects log output written from the writer goroutine.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEncodeIsOneLine: raw JSON with newlines in an event is compacted, so
// JSON lines and the upload array stay well-formed.
func TestEncodeIsOneLine(t *testing.T) {
	c := newCollector(t, nil)
	d := newDriven(t, Config{Output: OutputHTTP, URL: c.srv.URL}, Options{})
	d.Log(&Event{DecisionID: "a", Input: json.RawMessage("{\n  \"q\": \"x\\ny\"\n}")})
	d.Log(&Event{DecisionID: "b", Result: map[string]any{"msg": "line1\nline2 <b>"}})
	if err := d.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	u := c.all()[0]
	if bytes.Count(u.raw, []byte("\n")) != 0 || len(u.events) != 2 {
		t.Fatalf("upload = %s", u.raw)
	}
	if !strings.Contains(string(u.raw), `"input":{"q":"x\ny"}`) || !strings.Contains(string(u.raw), `line2 <b>`) {
		t.Fatalf("upload = %s", u.raw)
	}
}
