package identity

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
)

// referenceClaims is the decoding decodeClaimsOwned must equal:
// encoding/json with UseNumber, one object, nothing after it.
func referenceClaims(b []byte) (map[string]any, bool) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	m := map[string]any{}
	if dec.Decode(&m) != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return m, true
}

var claimsCorpus = []string{
	`{}`,
	` {"a": 9007199254740993, "b": [1.50, {"c": -0}], "d": 1e400, "e": -1.5E-3}`,
	`{"sub":"alice","roles":["a","b"],"act":{"sub":"bot","act":{"sub":"x"}},"n":null,"t":true,"f":false}`,
	`{"dup":"first","dup":"second","dup":{"x":1}}`,
	`{"esc":"a\"b\\c\/d\n\u00e9\ud83d\ude00","\u0073ub":"escaped name"}`,
	`{"lone":"\ud800","bad":"` + "\xff\xfe" + `","ok":"José 漢字 😀"}`,
	"{\"trunc\":\"\xe2\x82\"}",
	`{"empty":"","arr":[],"obj":{},"nested":[[[]],[{}]]}`,
	"\t{\"ws\" :\n[ 1 , 2 ]\r}\n",
	`{"a":1}{"b":2}`,
	`{"a":1} x`,
	`{"a":1,}`,
	`{"a":01}`,
	`{"a":"unterminated}`,
	`[{"a":1}]`,
	`"str"`,
	``,
	`   `,
	`{"a":1`,
	`{"a":nul}`,
	`{"a":"ctl` + "\x01" + `"}`,
	`{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	`{"a":` + strings.Repeat("[", 9990) + strings.Repeat("]", 9990) + `}`,
	// The grammar, checked while walking (no json.Valid pass).
	`{"a":-}`, `{"a":-01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":1E-7}`, `{"a":+1}`, `{"a":0x1}`,
	`{"a":-0.0e0}`, `{"a":12a}`, `{"a":tru}`, `{"a":truex}`, `{"a":nulll}`, `{"a":falsE}`,
	`{"a" "b"}`, `{"a":1 "b":2}`, `{"a":[1 2]}`, `{"a":[1,]}`, `{"a":[,1]}`, `{,"a":1}`, `{"a"}`, `{"a":}`, `{1:2}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, `{"a":"\uABCDef"}`, `{"a":"\`, `{"a":"x\"}`, `{"a":"x`,
	`{"a":[`, `{"a":{`, `{"a":{"b":1}`, `{"a":1}   `, "{\"a\":1}\x00", "{\"a\"\x00:1}", `{"a":1}]`,
	"{\"a\":\"tab\there\"}", "{\"\xff\":\"\xc0\xaf\"}", `{"a":"\u2028"}`, "{\"a\":\"\u2028\"}", `{"":""}`,
}

func TestDecodeClaimsMatchesEncodingJSON(t *testing.T) {
	for _, in := range claimsCorpus {
		checkClaimsDecoding(t, []byte(in))
	}
}

func checkClaimsDecoding(t *testing.T, in []byte) {
	t.Helper()
	want, ok := referenceClaims(in)
	buf := bytes.Clone(in)
	got, err := decodeClaimsOwned(buf)
	if ok != (err == nil) {
		t.Fatalf("%.80q: encoding/json ok=%v, decodeClaimsOwned err=%v", in, ok, err)
	}
	if ok && !reflect.DeepEqual(got, want) {
		t.Fatalf("%.80q:\n got %#v\nwant %#v", in, got, want)
	}
	// DecodeClaims copies: changing its input afterwards changes nothing.
	if ok {
		b := bytes.Clone(in)
		m, err := DecodeClaims(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = 'x'
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("%.80q: DecodeClaims result changed with its input", in)
		}
	}
}

func FuzzDecodeClaims(f *testing.F) {
	for _, in := range claimsCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkClaimsDecoding(t, in)
	})
}

func BenchmarkDecodeClaims(b *testing.B) {
	in := []byte(`{"iss":"https://idp.example.com","sub":"user-1234","aud":"https://mcp.example.com/mcp","exp":1800000300,"iat":1800000000,` +
		`"client_id":"web","scope":"tools:read tools:call","org_id":"org-1","roles":["viewer"],"jti":"2b7f3c1e-4a8d-4f7e-9c1a-0d5e6f7a8b9c"}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeClaimsOwned(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := referenceClaims(in); !ok {
				b.Fatal("refused")
			}
		}
	})
}
