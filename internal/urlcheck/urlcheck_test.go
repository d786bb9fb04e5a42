package urlcheck

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEndpoint(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://idp.example.com/token", ""},
		{"http://127.0.0.1:8080/token", ""},
		{"http://localhost/token", ""},
		{"http://[::1]:9/x", ""},
		{"http://idp.example.com/token", "must be https (or http on loopback)"},
		{"ftp://idp.example.com/", "must be https (or http on loopback)"},
		{"https://user:secret@idp.example.com/", "must not contain credentials"},
		{"https://idp.example.com/#frag", "must not contain a fragment"},
		{"/relative", "must be an absolute URL"},
		{"mailto:x@example.com", "must be an absolute URL"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := Endpoint(tc.in)
			if got != tc.want {
				t.Fatalf("Endpoint(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if strings.Contains(got, "secret") {
				t.Fatal("message echoes the URL")
			}
		})
	}
}

func TestScopeTokenAndURI(t *testing.T) {
	for s, want := range map[string]bool{"docs:read": true, "api://x/.default": true, "": false, "a b": false, `a"b`: false, `a\b`: false, "é": false} {
		if ScopeToken(s) != want {
			t.Errorf("ScopeToken(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{"https://x/y": true, "urn:x:y": true, "x": false, "https://x/#f": false, "https://x/\n": false} {
		if AbsoluteURI(s) != want {
			t.Errorf("AbsoluteURI(%q) = %v", s, !want)
		}
	}
	if Truncate("abcdef", 3) != "abc..." || Truncate("ab", 3) != "ab" {
		t.Error("Truncate")
	}
}

func TestLimitTransport(t *testing.T) {
	errBig := errors.New("too large")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = io.WriteString(w, strings.Repeat("x", 2048))
			return
		}
		_, _ = io.WriteString(w, "small")
	}))
	defer srv.Close()
	c := &http.Client{Transport: &LimitTransport{Base: http.DefaultTransport, Max: 1024, TooLarge: errBig}}
	resp, err := c.Get(srv.URL + "/small")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "small" {
		t.Fatalf("body %q", b)
	}
	if _, err := c.Get(srv.URL + "/big"); !errors.Is(err, errBig) {
		t.Fatalf("err = %v, want the TooLarge error", err)
	}
}
