package outbound

import (
	"net/http"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/httpc"
)

// maxResponseBytes bounds a token endpoint response body.
const maxResponseBytes = 1 << 20

// newHTTPClient copies base (or a default client) and enforces the
// outbound rules: a timeout, no redirects, responses of at most 1 MiB.
func newHTTPClient(base *http.Client, timeout time.Duration) *http.Client {
	return httpc.New(base, httpc.Rules{Timeout: timeout, Redirect: ErrRedirect,
		MaxBody: maxResponseBytes, TooLarge: ErrResponseTooLarge})
}
