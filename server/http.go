package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcpauthz/mcpauthz/credentials/mint"
)

// protectedResourceMetadata is the RFC 9728 document of one MCP server.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	ResourceName           string   `json:"resource_name,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// Handler serves /healthz, /readyz, /metrics and the RFC 9728 metadata of
// every configured MCP server.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/.well-known/oauth-protected-resource/", s.serveMetadata)
	mux.HandleFunc("/.well-known/oauth-protected-resource", s.serveMetadata)
	if s.connect != nil {
		mux.Handle("/connect/", s.connect)
	}
	if s.issuer != nil {
		// The built-in issuer's discovery and JWKS, below its URL's path.
		base := ""
		if u, err := url.Parse(s.issuer.URL()); err == nil {
			base = strings.TrimSuffix(u.EscapedPath(), "/")
		}
		h := s.issuer.Handler()
		for _, p := range []string{mint.OpenIDConfigurationPath, mint.OAuthMetadataPath, mint.JWKSPath} {
			mux.Handle(base+p, h)
		}
		if base != "" {
			mux.Handle(mint.OAuthMetadataPath+base, h)
		}
	}
	return mux
}

type readiness struct {
	Ready  bool         `json:"ready"`
	Policy policyStatus `json:"policy"`
}

type policyStatus struct {
	Ready       bool      `json:"ready"`
	Revision    string    `json:"revision"`
	LastError   string    `json:"last_error,omitempty"`
	LastLoad    time.Time `json:"last_load"`
	LastAttempt time.Time `json:"last_attempt"`
	Loads       uint64    `json:"loads"`
	Failures    uint64    `json:"failures"`
	// Sources reports each bundle source (path or bundle server).
	Sources []sourceStatus `json:"sources,omitempty"`
}

type sourceStatus struct {
	Name          string    `json:"name"`
	URL           string    `json:"url,omitempty"`
	Path          string    `json:"path,omitempty"`
	Revision      string    `json:"revision"`
	ETag          string    `json:"etag,omitempty"`
	ActivatedFrom string    `json:"activated_from,omitempty"`
	Persisted     bool      `json:"persisted"`
	LastSuccess   time.Time `json:"last_success"`
	LastAttempt   time.Time `json:"last_attempt"`
	LastError     string    `json:"last_error,omitempty"`
	PersistError  string    `json:"persist_error,omitempty"`
}

// serveReady is 200 while a policy is serving. A failed reload (the
// previous policy still serving) stays ready but reports the error.
func (s *Service) serveReady(w http.ResponseWriter, _ *http.Request) {
	st := s.policy.Status()
	body := readiness{Ready: st.Ready, Policy: policyStatus{
		Ready: st.Ready, Revision: st.Revision, LastError: st.LastError, LastLoad: st.LastLoad,
		LastAttempt: st.LastAttempt, Loads: st.Loads, Failures: st.Failures,
	}}
	for _, src := range st.Sources {
		body.Policy.Sources = append(body.Policy.Sources, sourceStatus{
			Name: src.Name, URL: src.URL, Path: src.Path, Revision: src.Revision, ETag: src.ETag,
			ActivatedFrom: src.ActivatedFrom, Persisted: src.Persisted, LastSuccess: src.LastSuccess,
			LastAttempt: src.LastAttempt, LastError: src.LastError, PersistError: src.PersistError,
		})
	}
	w.Header().Set("Content-Type", "application/json")
	if !st.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Service) serveMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	srv := s.catalog.byMetadataPath(r.Host, strings.TrimSuffix(r.URL.EscapedPath(), "/"))
	if srv == nil {
		http.NotFound(w, r)
		return
	}
	md := protectedResourceMetadata{
		Resource:               srv.cfg.Resource,
		AuthorizationServers:   srv.cfg.AuthorizationServers,
		ScopesSupported:        srv.cfg.Scopes,
		ResourceName:           orDefault(srv.cfg.Name, srv.id),
		BearerMethodsSupported: []string{"header"},
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(md)
}
