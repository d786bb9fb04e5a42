package extproc

import (
	"bytes"
	"errors"
)

var errEventTooLarge = errors.New("server-sent event larger than the configured limit")

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// sseFilter rewrites a text/event-stream body chunk by chunk, as the
// WHATWG event-stream grammar reads it: lines end with CRLF, LF or CR, an
// empty line ends an event, a leading BOM is dropped. Bytes of an event
// that has not ended yet are carried over to the next chunk, so the output
// only ever holds whole events; an event left unfinished at the end of the
// stream is dropped, as clients drop it. Events without data, and events
// whose data is blank, pass unchanged; an "endpoint" event (legacy HTTP+SSE)
// is reported to onEndpoint and passes; every other event's data must be a
// JSON-RPC message, which onData may replace (its data lines are then
// rewritten). Not safe for concurrent use.
type sseFilter struct {
	max int // largest event, bytes
	// onData returns the event's new data and whether it changed.
	onData     func(data []byte) ([]byte, bool, error)
	onEndpoint func(data []byte)

	buf     []byte // carried bytes: the start of an unfinished event
	scanned int    // buf[:scanned] holds complete lines
	// searched: buf[scanned:searched] holds no line end (searched may lag)
	searched int
	started  bool // the BOM check is done
	out      []byte
	join     []byte // multi-line data, joined
}

// write feeds one chunk (eos: the last) and returns the bytes to send on
// in its place; they are valid until the next call.
func (f *sseFilter) write(chunk []byte, eos bool) ([]byte, error) {
	f.buf = append(f.buf, chunk...)
	f.out = f.out[:0]
	buf := f.buf
	if !f.started {
		if len(buf) < len(utf8BOM) && !eos && bytes.HasPrefix(utf8BOM, buf) {
			return f.out, nil
		}
		buf = bytes.TrimPrefix(buf, utf8BOM)
		f.started = true
	}
	start, i := 0, f.scanned
	for i < len(buf) {
		// Bytes before f.searched (in the line at i) hold no line end.
		from := max(i, f.searched)
		j := lineEnd(buf[from:])
		if j < 0 {
			f.searched = len(buf)
			break
		}
		le, next := from+j, from+j+1
		if buf[le] == '\r' {
			switch {
			case next < len(buf):
				if buf[next] == '\n' {
					next++
				}
			case !eos: // CR at the end: a CRLF may be split across chunks
				f.searched = le
				le = -1
			}
		}
		if le < 0 {
			break
		}
		if le == i { // empty line: the event buf[start:next] is complete
			if next-start > f.max {
				return nil, errEventTooLarge
			}
			if err := f.event(buf[start:next]); err != nil {
				return nil, err
			}
			start = next
		}
		i = next
	}
	if eos {
		f.buf, f.scanned, f.searched = f.buf[:0], 0, 0
		return f.out, nil
	}
	if len(buf)-start > f.max {
		return nil, errEventTooLarge
	}
	if shift := len(f.buf) - len(buf) + start; shift > 0 { // consumed bytes (and a BOM)
		n := copy(f.buf, buf[start:])
		f.buf = f.buf[:n]
	}
	f.scanned, f.searched = i-start, max(f.searched-start, 0)
	return f.out, nil
}

// lineEnd is the index of the first CR or LF in b, or -1.
func lineEnd(b []byte) int {
	n := bytes.IndexByte(b, '\n')
	scope := b
	if n >= 0 {
		scope = b[:n]
	}
	if c := bytes.IndexByte(scope, '\r'); c >= 0 {
		return c
	}
	return n
}

// sseLine splits ev at p into one line (without terminator) and the index
// of the next line; ev always ends with a complete line.
func sseLine(ev []byte, p int) (line []byte, next int) {
	j := lineEnd(ev[p:])
	if j < 0 {
		return ev[p:], len(ev)
	}
	next = p + j + 1
	if ev[p+j] == '\r' && next < len(ev) && ev[next] == '\n' {
		next++
	}
	return ev[p : p+j], next
}

// sseField splits a line into field name and value (one leading space of
// the value removed); comment lines have name ":".
func sseField(line []byte) (name, value []byte) {
	c := bytes.IndexByte(line, ':')
	switch {
	case c == 0:
		return line[:1], nil
	case c < 0:
		return line, nil
	}
	v := line[c+1:]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return line[:c], v
}

// event handles one complete event (its terminating empty line included).
func (f *sseFilter) event(ev []byte) error {
	var data, typ []byte
	ndata := 0
	for p := 0; p < len(ev); {
		line, next := sseLine(ev, p)
		p = next
		name, value := sseField(line)
		switch string(name) {
		case "data":
			switch ndata {
			case 0:
				data = value
			case 1:
				f.join = append(append(append(f.join[:0], data...), '\n'), value...)
				data = f.join
			default:
				f.join = append(append(f.join, '\n'), value...)
				data = f.join
			}
			ndata++
		case "event":
			typ = value
		}
	}
	if ndata == 0 || skipWS(data, 0) == len(data) {
		f.out = append(f.out, ev...)
		return nil
	}
	if string(typ) == "endpoint" {
		if f.onEndpoint != nil {
			f.onEndpoint(data)
		}
		f.out = append(f.out, ev...)
		return nil
	}
	repl, changed, err := f.onData(data)
	if err != nil {
		return err
	}
	if !changed {
		f.out = append(f.out, ev...)
		return nil
	}
	wrote := false
	for p := 0; p < len(ev); {
		line, next := sseLine(ev, p)
		raw := ev[p:next]
		p = next
		if name, _ := sseField(line); string(name) != "data" {
			f.out = append(f.out, raw...)
			continue
		}
		if wrote {
			continue
		}
		wrote = true
		for {
			part, rest, more := bytes.Cut(repl, []byte{'\n'})
			f.out = append(append(append(f.out, "data: "...), part...), '\n')
			if !more {
				break
			}
			repl = rest
		}
	}
	return nil
}
