// Package httpjson writes the JSON answers of mcpauthz's own small HTTP
// servers (the development issuer, the test STS and OAuth provider):
// application/json, never cached.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v encoded as JSON, Content-Type
// application/json and Cache-Control no-store (RFC 6749 section 5.1). An
// encoding error is dropped: the status line has gone out already.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
