package oauthtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
// used by MCP 2025-11-25): a client_id that is an https URL names a JSON
// document of client metadata that the provider fetches on first use.
const (
	maxMetadataDoc  = 16 << 10
	metadataTTL     = 5 * time.Minute
	metadataTimeout = 5 * time.Second
	maxMetadataDocs = 1000
)

type cimdEntry struct {
	c   *client
	exp time.Time
}

// cimdDocument is the part of a metadata document the provider reads.
type cimdDocument struct {
	registration
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// isMetadataClientID reports whether id is meant as a metadata document URL.
func isMetadataClientID(id string) bool { return strings.HasPrefix(id, "https://") }

// metadataURLProblem says why id cannot be a Client ID Metadata Document
// URL, or "": https, a path, no fragment, no credentials, no dot segments.
func metadataURLProblem(id string) string {
	u, err := url.Parse(id)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsFunc(id, urlcheck.IsControl):
		return "the client_id URL must be an absolute https URL"
	case u.Path == "" || u.Path == "/":
		return "the client_id URL must have a path"
	case u.Fragment != "" || strings.Contains(id, "#") || u.User != nil:
		return "the client_id URL must not contain a fragment or credentials"
	case slices.ContainsFunc(strings.Split(u.EscapedPath(), "/"), func(s string) bool { return s == "." || s == ".." }):
		return "the client_id URL must not contain dot segments"
	}
	return ""
}

// metadataClient returns the client named by a metadata document URL,
// fetching the document unless cached. The error text is safe to show.
func (p *Provider) metadataClient(ctx context.Context, id string) (*client, error) {
	if msg := metadataURLProblem(id); msg != "" {
		return nil, errors.New(msg)
	}
	now := p.o.Now()
	p.mu.Lock()
	e, ok := p.cimd[id]
	p.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.c, nil
	}
	c, err := p.fetchMetadata(ctx, id)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.cimd) >= maxMetadataDocs {
		clear(p.cimd)
	}
	p.cimd[id] = cimdEntry{c: c, exp: now.Add(metadataTTL)}
	p.mu.Unlock()
	return c, nil
}

func (p *Provider) fetchMetadata(ctx context.Context, id string) (*client, error) {
	ctx, cancel := context.WithTimeout(ctx, metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, errors.New("the client_id URL is malformed")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.metadataHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the client metadata document failed: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("the client metadata document answered %d", resp.StatusCode)
	}
	body, err := urlcheck.ReadLimited(resp, maxMetadataDoc, errors.New("the client metadata document is too large"))
	if err != nil {
		return nil, err
	}
	var doc cimdDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("the client metadata document is not a JSON object")
	}
	if doc.ClientID != id {
		return nil, errors.New("the client metadata document's client_id differs from its URL")
	}
	if doc.ClientSecret != "" {
		return nil, errors.New("a client metadata document must not carry a client_secret")
	}
	if doc.TokenEndpointAuthMethod == "" {
		doc.TokenEndpointAuthMethod = "none"
	}
	if _, desc := p.checkRegistration(&doc.registration); desc != "" {
		return nil, errors.New("client metadata document: " + desc)
	}
	if doc.TokenEndpointAuthMethod != "none" {
		return nil, errors.New("client metadata document: only token_endpoint_auth_method none is supported")
	}
	return &client{
		id: id, public: true, redirects: doc.RedirectURIs, loopbackPort: true, registered: true, name: doc.ClientName,
	}, nil
}

// metadataHTTPClient is the client that fetches metadata documents: the
// configured one or a guarded default, never following redirects.
func metadataHTTPClient(c *http.Client) *http.Client {
	if c == nil {
		d := &net.Dialer{Timeout: metadataTimeout, Control: refuseNonPublic}
		c = &http.Client{Transport: &http.Transport{
			DialContext: d.DialContext, TLSHandshakeTimeout: metadataTimeout, ResponseHeaderTimeout: metadataTimeout,
			MaxIdleConns: 10, IdleConnTimeout: time.Minute,
		}}
	} else {
		cp := *c
		c = &cp
	}
	if c.Timeout == 0 {
		c.Timeout = metadataTimeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("redirects are not followed") }
	return c
}

// refuseNonPublic is a net.Dialer Control that refuses connections to
// loopback, private, link-local, shared, multicast and unspecified
// addresses, checked after name resolution (no DNS rebinding).
func refuseNonPublic(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return err
	}
	if !isPublic(ip.Unmap()) {
		return errors.New("the client_id URL resolves to a non-public address")
	}
	return nil
}

var sharedSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598

func isPublic(ip netip.Addr) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !sharedSpace.Contains(ip) && !ip.IsLoopback() &&
		!(ip.Is4() && ip.As4()[0] == 0)
}
