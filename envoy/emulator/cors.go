package emulator

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// corsDecode is Envoy's CORS filter (source/extensions/filters/http/cors/
// cors_filter.cc) on a route with policy c. Requests without an Origin pass
// untouched. A preflight (OPTIONS with Origin and
// Access-Control-Request-Method) from an allowed origin is answered here
// with 200 and never reaches ext_authz or the upstream; from another origin
// it continues down the chain (forward_not_matching_preflights, default
// true). For an allowed origin every later response, local replies from
// ext_authz included, gets Access-Control-Allow-Origin (and -Credentials,
// -Expose-Headers): the returned writer adds them, as the filter's
// encodeHeaders does.
func corsDecode(w http.ResponseWriter, r *http.Request, c *CORSPolicy) (http.ResponseWriter, bool) {
	origin := strings.Join(r.Header.Values("Origin"), ",")
	if origin == "" {
		return w, false
	}
	allowed := c.allows(origin)
	encode := func(h http.Header) {
		if !allowed {
			return // no latched origin: the response is left alone
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if c.AllowCredentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if c.ExposeHeaders != "" {
			h.Set("Access-Control-Expose-Headers", c.ExposeHeaders)
		}
	}
	reqMethod := strings.Join(r.Header.Values("Access-Control-Request-Method"), ",")
	if r.Method != http.MethodOptions || reqMethod == "" || (!allowed && !c.AnswerForeignPreflights) {
		return &corsWriter{ResponseWriter: w, encode: encode}, false
	}
	// The preflight response, then the encoder path over it.
	h := w.Header()
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	switch c.AllowMethods {
	case "":
	case "*":
		h.Set("Access-Control-Allow-Methods", reqMethod)
	default:
		h.Set("Access-Control-Allow-Methods", c.AllowMethods)
	}
	switch c.AllowHeaders {
	case "":
	case "*":
		if rh := strings.Join(r.Header.Values("Access-Control-Request-Headers"), ","); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
	default:
		h.Set("Access-Control-Allow-Headers", c.AllowHeaders)
	}
	if c.MaxAge != "" {
		h.Set("Access-Control-Max-Age", c.MaxAge)
	}
	encode(h)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return w, true
}

// allows is isOriginAllowed: any allow_origin_string_match entry matching
// the origin, or matching "*" literally.
func (c *CORSPolicy) allows(origin string) bool {
	for _, o := range c.AllowOrigins {
		if strings.EqualFold(o, "*") || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// corsWriter applies encode to the headers of the final response before
// they are written. It unwraps for http.ResponseController (SSE flushing).
type corsWriter struct {
	http.ResponseWriter
	encode func(http.Header)
	done   bool
}

func (c *corsWriter) WriteHeader(code int) {
	if !c.done && code >= 200 {
		c.done = true
		c.encode(c.ResponseWriter.Header())
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *corsWriter) Write(b []byte) (int, error) {
	if !c.done {
		c.WriteHeader(http.StatusOK)
	}
	return c.ResponseWriter.Write(b)
}

func (c *corsWriter) Flush() {
	if !c.done {
		c.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(c.ResponseWriter).Flush()
}

func (c *corsWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// RoutesFrom turns the routes of a bootstrap's parameters (for example
// envoy.CatalogParams, what `mcpauthz envoy generate` renders) into
// emulator routes, so the stand-in runs the configuration Envoy would: the
// same matches, context_extensions, ext_authz exemptions and CORS
// policies, ext_proc exemptions and accept-encoding (set Config.ExtProc to
// MCPExtProc() unless p.DisableExtProc). Routes with a prefix_rewrite are
// refused (not emulated).
func RoutesFrom(p envoy.BootstrapParams) ([]Route, error) {
	out := make([]Route, 0, len(p.Routes))
	for i, r := range p.Routes {
		if r.PrefixRewrite != "" {
			return nil, fmt.Errorf("emulator: routes[%d] (%s): prefix_rewrite is not emulated", i, r.Name)
		}
		scheme := "http"
		if r.UpstreamTLS {
			scheme = "https"
		}
		rt := Route{
			Name: r.Name, Host: r.Host, PathPrefix: r.PathPrefix, Path: r.Path,
			Upstream:          scheme + "://" + net.JoinHostPort(r.UpstreamHost, strconv.Itoa(r.UpstreamPort)),
			ContextExtensions: r.ContextExtensions, DisableExtAuthz: r.DisableExtAuthz,
		}
		if !p.DisableExtProc {
			if r.DisableExtAuthz {
				rt.DisableExtProc = true
			} else {
				rt.RequestHeadersToSet = []envoy.Header{{Name: "accept-encoding", Value: "identity"}}
			}
		}
		if len(r.CORSOrigins) > 0 {
			rt.CORS = MCPCORS(r.CORSOrigins...)
		}
		out = append(out, rt)
	}
	return out, nil
}
