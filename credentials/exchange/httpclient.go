package exchange

import (
	"errors"
	"net/http"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/httpc"
)

// maxResponseBytes bounds an STS or JWKS response body.
const maxResponseBytes = 1 << 20

// newHTTPClient copies base (or a default client) and enforces the rules
// for calls to the STS: a timeout and no redirects (a redirect response is
// returned as is and refused by the caller). Bodies are bounded where they
// are read.
func newHTTPClient(base *http.Client, timeout time.Duration) *http.Client {
	return httpc.New(base, httpc.Rules{Timeout: timeout, Redirect: http.ErrUseLastResponse})
}

// errTooLarge fails a JWKS fetch whose body exceeds maxResponseBytes.
var errTooLarge = errors.New("response exceeds 1 MiB")
