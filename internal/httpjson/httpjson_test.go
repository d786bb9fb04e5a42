package httpjson

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name   string
		status int
		v      any
		want   string
	}{
		{name: "ok", status: http.StatusOK, v: map[string]any{"active": true}, want: `{"active":true}` + "\n"},
		{name: "error", status: http.StatusBadRequest, v: map[string]string{"error": "invalid_request"}, want: `{"error":"invalid_request"}` + "\n"},
		{name: "unencodable", status: http.StatusOK, v: func() {}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				Write(w, tt.status, tt.v)
			}))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			if string(b) != tt.want {
				t.Errorf("body = %q, want %q", b, tt.want)
			}
			if tt.want != "" && !json.Valid(b) {
				t.Errorf("body is not JSON: %q", b)
			}
		})
	}
}
