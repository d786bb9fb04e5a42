package devidp

import (
	"maps"
	"net/http"

	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

// User is a development user who signs in at /authorize.
type User struct {
	// Password is checked by the login form (default users: the username).
	Password string
	// Claims go into the user's ID tokens and access tokens, e.g. roles,
	// name, email. org_id defaults to "acme".
	Claims map[string]any
}

// DefaultOrg is the org_id of users whose claims do not name one.
const DefaultOrg = "acme"

// DefaultUsers are alice (roles [viewer]), bob ([editor]) and carol
// ([admin]) of org acme, each with the username as password.
func DefaultUsers() map[string]User {
	mk := func(name, role string) User {
		return User{Password: name, Claims: map[string]any{"org_id": DefaultOrg, "roles": []string{role}, "name": name}}
	}
	return map[string]User{"alice": mk("alice", "viewer"), "bob": mk("bob", "editor"), "carol": mk("carol", "admin")}
}

// newAuthServer builds the sign-in endpoints: an oauthtest.Provider whose
// issuer is this Issuer's URL and whose tokens are signed with its keys.
// Clients in Options.Clients sign in without a consent page, on any
// loopback redirect URI (plus Options.ClientRedirectURIs); clients
// registered through RFC 7591 get the consent page and their own redirect
// URIs, as do clients whose client_id is the https URL of a Client ID
// Metadata Document. Access tokens are JWTs like Mint's (aud = the RFC 8707 resource,
// else the client_id) carrying the user's claims, scope and client_id;
// ID tokens carry the user's claims, nonce, aud = client_id.
func (i *Issuer) newAuthServer() *oauthtest.Provider {
	users := i.opts.Users
	if users == nil {
		users = DefaultUsers()
	}
	passwords := make(map[string]string, len(users))
	claims := make(map[string]map[string]any, len(users))
	for name, u := range users {
		passwords[name] = u.Password
		c := maps.Clone(u.Claims)
		if c == nil {
			c = map[string]any{}
		}
		if _, ok := c["org_id"]; !ok {
			c["org_id"] = DefaultOrg
		}
		claims[name] = c
	}
	return oauthtest.New(oauthtest.Options{
		Clients:                   i.opts.Clients,
		RedirectURIs:              i.opts.ClientRedirectURIs,
		AnyLoopbackRedirect:       true,
		Users:                     passwords,
		UserClaims:                claims,
		Scopes:                    i.opts.Scopes,
		AccessTTL:                 i.opts.TokenTTL,
		RequireConsent:            new(false),
		Registration:              true,
		ClientIDMetadataDocuments: true,
		MetadataHTTPClient:        i.opts.ClientMetadataHTTPClient,
		JWTAccessTokens:           true,
		Now:                       i.opts.Now,
		Issuer:                    i.URL,
		Sign: func(c map[string]any, typ string) (string, error) {
			return i.Mint(c, WithHeader("typ", typ))
		},
	})
}

// AuthServer returns the sign-in endpoints' provider, for tests: its
// SetAccessTTL, SetFault, RevokeUser, Requests and VerifyAccessToken act on
// the tokens issued through /authorize and /token.
func (i *Issuer) AuthServer() *oauthtest.Provider { return i.auth }

// mountAuthServer adds the sign-in endpoints to mux.
func (i *Issuer) mountAuthServer(mux *http.ServeMux) {
	h := i.auth.Handler()
	for _, p := range []string{"/authorize", "/token", "/revoke", "/register", "/userinfo"} {
		mux.Handle(p, h)
	}
}

// discovery is the RFC 8414 / OIDC metadata: the sign-in endpoints' plus
// introspection and the algorithms this issuer signs with.
func (i *Issuer) discovery() map[string]any {
	md := i.auth.Metadata()
	md["id_token_signing_alg_values_supported"] = []string{"RS256", "ES256"}
	md["introspection_endpoint"] = i.URL() + "/introspect"
	md["introspection_endpoint_auth_methods_supported"] = []string{"client_secret_basic", "client_secret_post"}
	return md
}
