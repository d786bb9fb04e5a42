package extproc

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// newTestSSE returns a filter that drops entries whose name contains
// "secret" from every JSON-RPC response.
func newTestSSE(max int) *sseFilter {
	var f filterer
	var scratch []byte
	d := allowExcept("secret")
	return &sseFilter{max: max, onData: func(data []byte) ([]byte, bool, error) {
		out, st, err := f.filterMessage(data, pickAll(d), scratch)
		if err != nil {
			return nil, false, err
		}
		if !st.changedMessage {
			return data, false, nil
		}
		scratch = out
		return out, true, nil
	}}
}

// runSSE feeds chunks (the last with end of stream) and concatenates the
// output.
func runSSE(f *sseFilter, chunks ...[]byte) ([]byte, error) {
	var out []byte
	for i, c := range chunks {
		o, err := f.write(c, i == len(chunks)-1)
		if err != nil {
			return out, err
		}
		out = append(out, o...)
	}
	return out, nil
}

const (
	listEvent = "event: message\nid: 42\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"public\"},{\"name\":\"secretTool\"}],\"nextCursor\":\"abc\"}}\n\n"
	listOut   = "event: message\nid: 42\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"public\"}],\"nextCursor\":\"abc\"}}\n\n"
	progress  = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n"
)

func TestSSEFilter(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"list response filtered, fields kept", listEvent, listOut},
		{"non-response events pass first", ": keepalive\n\n" + progress + "id: 1\nretry: 10\n\n" + listEvent, ": keepalive\n\n" + progress + "id: 1\nretry: 10\n\n" + listOut},
		{"priming event with empty data", "id: p0\ndata:\n\n" + listEvent, "id: p0\ndata:\n\n" + listOut},
		{"CRLF", strings.ReplaceAll(listEvent, "\n", "\r\n"),
			"event: message\r\nid: 42\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"public\"}],\"nextCursor\":\"abc\"}}\n\r\n"},
		{"CR", strings.ReplaceAll(listEvent, "\n", "\r"),
			"event: message\rid: 42\rdata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"public\"}],\"nextCursor\":\"abc\"}}\n\r"},
		{"JSON across data lines", "data: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata:\"result\":{\"tools\":[\ndata: {\"name\":\"secret\"},\ndata: {\"name\":\"ok\"}]}}\n\n",
			"data: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata: \"result\":{\"tools\":[\ndata: {\"name\":\"ok\"}]}}\n\n"},
		{"BOM dropped", "\ufeff" + listEvent, listOut},
		{"unfinished event dropped at the end", listEvent + "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n", listOut},
		{"endpoint event passes", "event: endpoint\ndata: /messages?sessionId=x\n\n", "event: endpoint\ndata: /messages?sessionId=x\n\n"},
		{"error response passes", "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":1,\"message\":\"secret\"}}\n\n", "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":1,\"message\":\"secret\"}}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole, err := runSSE(newTestSSE(1<<20), []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(whole) != tt.want {
				t.Fatalf("got  %q\nwant %q", whole, tt.want)
			}
			// Every split into two chunks, and one byte at a time.
			for k := 0; k <= len(tt.in); k++ {
				got, err := runSSE(newTestSSE(1<<20), []byte(tt.in[:k]), []byte(tt.in[k:]))
				if err != nil || string(got) != tt.want {
					t.Fatalf("split at %d: %q, %v", k, got, err)
				}
			}
			var bytesChunks [][]byte
			for i := 0; i < len(tt.in); i++ {
				bytesChunks = append(bytesChunks, []byte{tt.in[i]})
			}
			got, err := runSSE(newTestSSE(1<<20), append(bytesChunks, nil)...)
			if err != nil || string(got) != tt.want {
				t.Fatalf("byte by byte: %q, %v", got, err)
			}
		})
	}
}

func TestSSEFilterFailsClosed(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     error
	}{
		{"non-JSON data", progress + "data: tools: secret\n\n", 1 << 20, errNotMessage},
		{"truncated JSON", "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"secret\"}\n\n", 1 << 20, errSyntax},
		{"batch", "data: [{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}]\n\n", 1 << 20, errBatch},
		{"custom event type", "event: other\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"Result\":{\"tools\":[]}}\n\n", 1 << 20, errAmbiguous},
		{"event too large", listEvent, 40, errEventTooLarge},
		{"unfinished event too large", "data: " + strings.Repeat("x", 100), 40, errEventTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runSSE(newTestSSE(tt.max), []byte(tt.in), []byte("\n"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSSEEndpoint(t *testing.T) {
	f := newTestSSE(1 << 20)
	var got string
	f.onEndpoint = func(d []byte) { got = string(d) }
	if _, err := runSSE(f, []byte("event: endpoint\r\ndata: /messages?sessionId=abc\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if got != "/messages?sessionId=abc" {
		t.Fatalf("endpoint %q", got)
	}
}

// FuzzSSEFilter feeds arbitrary streams, split at arbitrary points, to the
// SSE filter. Whatever the input and the chunking: the outcome does not
// depend on the chunking, and no event a client could dispatch from the
// output (even one that dispatches an unfinished last event, reads
// keys case-insensitively or lets the last duplicate win) lists an entry
// the policy refused.
func FuzzSSEFilter(f *testing.F) {
	f.Add([]byte(listEvent), []byte{5, 17})
	f.Add([]byte(progress+listEvent), []byte{1, 1, 1, 1})
	f.Add([]byte("\ufeff"+strings.ReplaceAll(listEvent, "\n", "\r\n")), []byte{3, 2})
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata:\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\r\r"), []byte{9})
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"Name\":\"secret\"}]}}\n\n"), []byte{})
	f.Add([]byte("event: endpoint\ndata: /m?sessionId=1\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\",\"name\":\"a\"}]}}\n\n"), []byte{40})
	f.Fuzz(func(t *testing.T, in, splits []byte) {
		whole, errWhole := runSSE(newTestSSE(4096), in)
		var chunks [][]byte
		rest := in
		for _, s := range splits {
			if len(rest) == 0 {
				break
			}
			n := int(s) % (len(rest) + 1)
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		chunks = append(chunks, rest)
		split, errSplit := runSSE(newTestSSE(4096), chunks...)
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("outcome depends on chunking: whole %v, split %v", errWhole, errSplit)
		}
		if errWhole == nil && !bytes.Equal(whole, split) {
			t.Fatalf("output depends on chunking:\n%q\n%q", whole, split)
		}
		// Even a failed stream may have sent its earlier events.
		for _, out := range [][]byte{whole, split} {
			for _, data := range clientEvents(out) {
				for _, name := range listedNames(data) {
					if strings.Contains(name, "secret") {
						t.Fatalf("refused entry %q reached the client in %q (input %q)", name, data, in)
					}
				}
			}
		}
	})
}

// clientEvents is an independent, lenient reading of an event stream: the
// data of every event, the unfinished last one included, any event type.
func clientEvents(b []byte) [][]byte {
	b = bytes.TrimPrefix(b, utf8BOM)
	var events [][]byte
	var data []byte
	has := false
	norm := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(b))
	for _, line := range strings.Split(norm, "\n") {
		if line == "" {
			if has {
				events = append(events, data)
			}
			data, has = nil, false
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		if name == "data" {
			if has {
				data = append(data, '\n')
			}
			data, has = append(data, value...), true
		}
	}
	if has {
		events = append(events, data)
	}
	return events
}
