package oauthtest

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/mcpauthz/mcpauthz/internal/randid"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// registration is the part of an RFC 7591 request the provider reads;
// other members are ignored, as section 2 allows.
type registration struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	Scope                   string   `json:"scope"`
	SoftwareID              string   `json:"software_id"`
	SoftwareVersion         string   `json:"software_version"`
	ApplicationType         string   `json:"application_type"`
}

const maxRedirectURIs = 20

// register serves POST /register (RFC 7591): public clients (method none)
// and confidential ones (client_secret_basic, the default, or
// client_secret_post); redirect URIs must be https or http on loopback.
// Registered clients always see the consent page.
func (p *Provider) register(w http.ResponseWriter, r *http.Request) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		writeError(w, http.StatusBadRequest, "invalid_client_metadata", "content type must be application/json")
		return
	}
	var reg registration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxForm))
	if err := dec.Decode(&reg); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_client_metadata", "the body must be one JSON object of client metadata")
		return
	}
	if code, desc := p.checkRegistration(&reg); code != "" {
		writeError(w, http.StatusBadRequest, code, desc)
		return
	}
	c := &client{
		id: "dyn_" + randid.Hex(12), public: reg.TokenEndpointAuthMethod == "none",
		redirects: slices.Clone(reg.RedirectURIs), loopbackPort: true, registered: true,
		name: reg.ClientName,
	}
	md := map[string]any{
		"client_id":                  c.id,
		"client_id_issued_at":        p.o.Now().Unix(),
		"redirect_uris":              reg.RedirectURIs,
		"token_endpoint_auth_method": reg.TokenEndpointAuthMethod,
		"grant_types":                reg.GrantTypes,
		"response_types":             reg.ResponseTypes,
	}
	if !c.public {
		c.secret = randToken("")
		md["client_secret"] = c.secret
		md["client_secret_expires_at"] = 0
	}
	for k, v := range map[string]string{
		"client_name": reg.ClientName, "client_uri": reg.ClientURI, "scope": reg.Scope,
		"software_id": reg.SoftwareID, "software_version": reg.SoftwareVersion, "application_type": reg.ApplicationType,
	} {
		if v != "" {
			md[k] = v
		}
	}
	p.mu.Lock()
	if p.nRegistered >= maxClients {
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_client_metadata", "too many registered clients")
		return
	}
	p.nRegistered++
	p.clients[c.id] = c
	p.mu.Unlock()
	writeJSON(w, http.StatusCreated, md)
}

// checkRegistration validates and defaults reg; it returns an RFC 7591
// error code and description, or "".
func (p *Provider) checkRegistration(reg *registration) (string, string) {
	if len(reg.RedirectURIs) == 0 {
		return "invalid_redirect_uri", "redirect_uris is required"
	}
	if len(reg.RedirectURIs) > maxRedirectURIs {
		return "invalid_redirect_uri", "too many redirect_uris"
	}
	for _, u := range reg.RedirectURIs {
		if msg := redirectProblem(u); msg != "" {
			return "invalid_redirect_uri", "redirect_uris: " + msg
		}
	}
	switch reg.TokenEndpointAuthMethod {
	case "":
		reg.TokenEndpointAuthMethod = "client_secret_basic"
	case "none", "client_secret_basic", "client_secret_post":
	default:
		return "invalid_client_metadata", "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post"
	}
	if len(reg.GrantTypes) == 0 {
		reg.GrantTypes = []string{"authorization_code"}
	}
	for _, g := range reg.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return "invalid_client_metadata", "grant_types may hold only authorization_code and refresh_token"
		}
	}
	if len(reg.ResponseTypes) == 0 {
		reg.ResponseTypes = []string{"code"}
	}
	if len(reg.ResponseTypes) != 1 || reg.ResponseTypes[0] != "code" {
		return "invalid_client_metadata", "response_types must be [code]"
	}
	if _, desc := p.checkScopes(reg.Scope, nil); desc != "" {
		return "invalid_client_metadata", desc
	}
	for _, s := range []string{reg.ClientName, reg.ClientURI, reg.SoftwareID, reg.SoftwareVersion, reg.ApplicationType} {
		if len(s) > 200 || strings.ContainsFunc(s, urlcheck.IsControl) {
			return "invalid_client_metadata", "client metadata strings must be at most 200 characters without control characters"
		}
	}
	return "", ""
}

// redirectProblem says what is wrong with a redirect URI to register, or "".
func redirectProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || strings.ContainsFunc(raw, urlcheck.IsControl):
		return "each must be an absolute URL"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not contain a fragment"
	case u.User != nil:
		return "must not contain credentials"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && urlcheck.IsLoopback(u.Hostname()):
		return ""
	}
	return "must be https, or http on a loopback host"
}
