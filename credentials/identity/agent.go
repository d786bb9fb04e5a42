package identity

import (
	"slices"
	"strings"
)

// Agent recognition.
//
// Who is calling matters to policy: "agents may not ..." rules apply to
// kinds agent and agent_for_user only, so an agent classified human slips
// past them. The identity providers give their agents' tokens these shapes
// (none of them writes RFC 8693 `act` for these grants):
//
//   - Microsoft Entra ID on-behalf-of: sub is the user's pairwise id, oid the
//     user, azp (v2) or appid (v1) the calling application, scp the
//     delegated scopes. Recognised when that application is listed in
//     agent.on_behalf_of_client_ids: agent_for_user, actor = the client.
//   - Microsoft Entra ID app-only (client credentials, managed identities):
//     idtyp "app" when the optional claim is configured; always oid == sub
//     and no scp; roles holds the application permissions. Rule
//     entra_app_only: agent.
//   - Okta client credentials: sub == cid (the client id), scp an array,
//     no uid. Rule okta_client_credentials: agent.
//   - Keycloak client credentials: sub is the client's service-account user
//     (a UUID), azp the client, preferred_username
//     "service-account-<client>", and, from the service_account client
//     scope, client_id (clientId before Keycloak 25), clientHost and
//     clientAddress. Rule keycloak_service_account: agent. Keycloak token
//     exchange with an `act` claim is agent_for_user like any `act`.
//   - Auth0 client credentials: gty "client-credentials" (Auth0 token
//     profile) and sub "<client id>@clients" (both profiles). Rule
//     auth0_client_credentials: agent.
//   - Any IdP following RFC 9068 for client credentials: sub == client_id.
//     Rule subject_equals_client_id: agent.

// classification is the outcome of classify for a token without `act`.
type classification struct {
	kind  Kind
	rule  string // the rule that decided, "" for human
	actor bool   // agent_for_user through on_behalf_of_client_ids: the client is the actor
}

// classify decides the kind of a token without `act` (see AgentConfig for
// the order). sub and clientID are the token's validated subject and client id.
func classify(ac AgentConfig, claims map[string]any, sub, clientID string) classification {
	agent := func(rule string) classification { return classification{kind: KindAgent, rule: rule} }
	if clientID != "" && slices.Contains(ac.ClientIDs, clientID) {
		return agent(RuleClientIDs)
	}
	if ac.Claim != "" {
		vals, _ := stringOrArray(claims[ac.Claim])
		for _, v := range vals {
			if slices.Contains(ac.Values, v) {
				return agent(RuleClaim)
			}
		}
	}
	// The IdP-specific rules come first so that AgentRule names the most
	// precise one; the order does not change the kind.
	r := ac.Rules
	switch {
	case enabled(r.Auth0ClientCredentials) && isAuth0ClientCredentials(claims, sub, clientID):
		return agent(RuleAuth0ClientCredentials)
	case enabled(r.OktaClientCredentials) && isOktaClientCredentials(claims, sub):
		return agent(RuleOktaClientCredentials)
	case enabled(r.KeycloakServiceAccount) && isKeycloakServiceAccount(claims):
		return agent(RuleKeycloakServiceAccount)
	case enabled(r.EntraAppOnly) && isEntraAppOnly(claims, sub):
		return agent(RuleEntraAppOnly)
	case enabled(r.SubjectEqualsClientID) && clientID != "" && sub == clientID:
		return agent(RuleSubjectEqualsClientID)
	}
	if clientID != "" && slices.Contains(ac.OnBehalfOfClientIDs, clientID) {
		return classification{kind: KindAgentForUser, rule: RuleOnBehalfOfClientIDs, actor: true}
	}
	return classification{kind: KindHuman}
}

// isAuth0ClientCredentials: gty "client-credentials", or sub
// "<client id>@clients".
func isAuth0ClientCredentials(claims map[string]any, sub, clientID string) bool {
	if stringValue(claims["gty"]) == "client-credentials" {
		return true
	}
	return clientID != "" && sub == clientID+"@clients"
}

// isOktaClientCredentials: sub equals Okta's cid claim.
func isOktaClientCredentials(claims map[string]any, sub string) bool {
	cid := stringValue(claims["cid"])
	return cid != "" && sub == cid
}

// keycloakServiceAccountPrefix starts the username Keycloak gives the
// service-account user of a client.
const keycloakServiceAccountPrefix = "service-account-"

// isKeycloakServiceAccount: azp names the client, and preferred_username is
// its service-account user or the token carries Keycloak's service-account
// client notes for that client.
func isKeycloakServiceAccount(claims map[string]any) bool {
	azp := stringValue(claims["azp"])
	if azp == "" {
		return false
	}
	if stringValue(claims["preferred_username"]) == keycloakServiceAccountPrefix+strings.ToLower(azp) {
		return true
	}
	noted := stringValue(claims["client_id"]) == azp || stringValue(claims["clientId"]) == azp
	_, host := claims["clientHost"]
	_, addr := claims["clientAddress"]
	return noted && (host || addr)
}

// isEntraAppOnly: idtyp "app", or oid == sub without scp.
func isEntraAppOnly(claims map[string]any, sub string) bool {
	if stringValue(claims["idtyp"]) == "app" {
		return true
	}
	oid := stringValue(claims["oid"])
	_, scp := claims["scp"]
	return oid != "" && oid == sub && !scp
}
