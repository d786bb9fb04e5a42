package oauthtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// LoginOption adjusts LoginClient and Authorize.
type LoginOption func(*loginOpts)

type loginOpts struct {
	deny      bool
	transport http.RoundTripper
}

// Deny answers the consent page with Deny instead of Allow.
func Deny() LoginOption { return func(o *loginOpts) { o.deny = true } }

// WithTransport sets the transport requests go through (default
// http.DefaultTransport).
func WithTransport(rt http.RoundTripper) LoginOption {
	return func(o *loginOpts) { o.transport = rt }
}

// maxPage bounds the pages the login client reads.
const maxPage = 1 << 20

// LoginClient returns an HTTP client that behaves like a person at a
// browser without JavaScript: it keeps cookies, follows redirects, and
// whenever a response is the login page of this package (or of the
// development IdP, which embeds it) it signs in as username with password,
// and whenever it is the consent page it clicks Allow (Deny with Deny()).
// A wrong password ends on the login page again, with status 401.
//
// Use it for whole flows that pass through several sites (an application's
// login, then a provider's consent, back to the application's page):
//
//	c := oauthtest.LoginClient("alice", "alice")
//	resp, err := c.Get(connectLink) // ends on the application's page
func LoginClient(username, password string, opts ...LoginOption) *http.Client {
	o := loginOpts{transport: http.DefaultTransport}
	for _, f := range opts {
		f(&o)
	}
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: &formFiller{
		base: o.transport, jar: jar, user: username, pass: password, deny: o.deny,
	}}
}

// Authorize drives a sign-in at a provider: it opens authorizeURL (the
// provider's authorization request, as a client built it), signs in as
// username, answers the consent page, and returns the URL the provider
// redirected the browser to, without following it: the client's
// redirect_uri with code, state and iss, or with error. It fails when the
// provider shows a page instead (unknown client, bad redirect URI, wrong
// password), quoting the page's message.
func Authorize(ctx context.Context, authorizeURL, username, password string, opts ...LoginOption) (*url.URL, error) {
	start, err := url.Parse(authorizeURL)
	if err != nil {
		return nil, fmt.Errorf("oauthtest: authorize URL: %w", err)
	}
	c := LoginClient(username, password, opts...)
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != start.Host || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authorizeURL, nil)
	if err != nil {
		return nil, fmt.Errorf("oauthtest: authorize URL: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauthtest: authorize: %w", err)
	}
	defer resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
		return resp.Request.URL.Parse(loc)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	return nil, fmt.Errorf("oauthtest: authorize: the provider answered %d without redirecting: %s", resp.StatusCode, pageMessage(body))
}

// formFiller submits the login and consent forms it sees in responses.
type formFiller struct {
	base       http.RoundTripper
	jar        http.CookieJar
	user, pass string
	deny       bool
}

func (t *formFiller) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	loggedIn := false
	for step := 0; err == nil && step < 3; step++ {
		var f *form
		if f, err = pageForm(resp); err != nil || f == nil {
			break
		}
		vals := f.values
		switch {
		case f.id == "oauthtest-login" && !loggedIn:
			loggedIn = true
			vals.Set("username", t.user)
			vals.Set("password", t.pass)
		case f.id == "oauthtest-consent":
			vals.Set("decision", "approve")
			if t.deny {
				vals.Set("decision", "deny")
			}
		default:
			return resp, nil // the login failed: show the page again
		}
		next, nerr := http.NewRequestWithContext(req.Context(), http.MethodPost, f.action.String(), strings.NewReader(vals.Encode()))
		if nerr != nil {
			return nil, nerr
		}
		next.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if t.jar != nil {
			t.jar.SetCookies(resp.Request.URL, resp.Cookies())
			for _, ck := range t.jar.Cookies(next.URL) {
				next.AddCookie(ck)
			}
		}
		resp, err = t.base.RoundTrip(next)
	}
	return resp, err
}

// form is a login or consent form found in a page.
type form struct {
	id     string
	action *url.URL
	values url.Values
}

// pageForm returns the oauthtest form in resp's HTML page, or nil; it
// buffers the body so resp stays readable.
func pageForm(resp *http.Response) (*form, error) {
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "text/html" || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized) {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("oauthtest: read page: %w", err)
	}
	return findForm(body, resp.Request.URL), nil
}

// findForm parses page and returns its oauthtest-login or
// oauthtest-consent form with its hidden inputs.
func findForm(page []byte, base *url.URL) *form {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return nil
	}
	var found *form
	var walk func(n *html.Node, f *form)
	walk = func(n *html.Node, f *form) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				if id := attr(n, "id"); f == nil && (id == "oauthtest-login" || id == "oauthtest-consent") {
					action, err := base.Parse(attr(n, "action"))
					if err != nil {
						return
					}
					f = &form{id: id, action: action, values: url.Values{}}
					found = f
				}
			case "input":
				if f != nil && attr(n, "type") == "hidden" && attr(n, "name") != "" {
					f.values.Set(attr(n, "name"), attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	walk(doc, nil)
	return found
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// pageMessage extracts the error text of a page (its role=alert element),
// else a short prefix of its text.
func pageMessage(page []byte) string {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return "unreadable page"
	}
	var alert, all strings.Builder
	var walk func(n *html.Node, inAlert bool)
	walk = func(n *html.Node, inAlert bool) {
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script") {
			return
		}
		if n.Type == html.ElementNode && attr(n, "role") == "alert" {
			inAlert = true
		}
		if n.Type == html.TextNode {
			all.WriteString(n.Data)
			if inAlert {
				alert.WriteString(n.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inAlert)
		}
	}
	walk(doc, false)
	msg := strings.Join(strings.Fields(alert.String()), " ")
	if msg == "" {
		msg = strings.Join(strings.Fields(all.String()), " ")
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		return "empty page"
	}
	return msg
}

var _ http.RoundTripper = (*formFiller)(nil)
