package connections

import "fmt"

// Transition names one change of a connection's status. Every status change
// goes through next, which refuses any (transition, status) pair not listed
// in transitions.
type Transition string

// The transitions of the lifecycle.
const (
	// TConnectStarted: a connect flow began (the browser was sent to the provider).
	TConnectStarted Transition = "connect_started"
	// TConnectAbandoned: a pending flow expired without a callback.
	TConnectAbandoned Transition = "connect_abandoned"
	// TConnectFailed: the callback failed (provider error, wrong user, exchange failure).
	TConnectFailed Transition = "connect_failed"
	// TConnected: the callback exchanged the code and stored the tokens.
	TConnected Transition = "connected"
	// TRefreshed: a refresh succeeded.
	TRefreshed Transition = "refreshed"
	// TRefreshFailed: a transient refresh failure below MaxFailures.
	TRefreshFailed Transition = "refresh_failed"
	// TRefreshGaveUp: MaxFailures transient failures in a row.
	TRefreshGaveUp Transition = "refresh_gave_up"
	// TRefreshRevoked: invalid_grant while the refresh token was within its life.
	TRefreshRevoked Transition = "refresh_revoked"
	// TRefreshExpired: invalid_grant after the refresh token's known lifetime ended.
	TRefreshExpired Transition = "refresh_expired"
	// TAccessExpired: the access token ran out and there is no refresh token.
	TAccessExpired Transition = "access_expired"
	// TUpstreamRejected: the upstream answered 401 and a refresh did not help.
	TUpstreamRejected Transition = "upstream_rejected"
	// TRevoked: a user, an admin or the system revoked the connection.
	TRevoked Transition = "revoked"
	// TModeSwitch: the server's mode changed (or it was removed).
	TModeSwitch Transition = "mode_switch"
)

// restore is a pseudo-status in the table: the status the record had before
// its connect flow began.
const restore Status = "(previous)"

var stored = []Status{StatusNeedsAuthorization, StatusPending, StatusAuthorized, StatusExpired, StatusRevoked, StatusError}

// transitions is the lifecycle: for each transition, the statuses it may
// start from and the status it leads to.
var transitions = map[Transition]map[Status]Status{
	TConnectStarted: {
		StatusNeedsAuthorization: StatusPending, StatusPending: StatusPending,
		StatusExpired: StatusPending, StatusRevoked: StatusPending, StatusError: StatusPending,
		// Reconnecting a working connection keeps it working until the new flow completes.
		StatusAuthorized: StatusAuthorized,
	},
	TConnectAbandoned: {StatusPending: restore},
	TConnectFailed:    {StatusPending: restore, StatusAuthorized: StatusAuthorized},
	TConnected: {
		StatusNeedsAuthorization: StatusAuthorized, StatusPending: StatusAuthorized, StatusAuthorized: StatusAuthorized,
		StatusExpired: StatusAuthorized, StatusRevoked: StatusAuthorized, StatusError: StatusAuthorized,
	},
	TRefreshed:        {StatusAuthorized: StatusAuthorized, StatusError: StatusAuthorized},
	TRefreshFailed:    {StatusAuthorized: StatusAuthorized, StatusError: StatusError},
	TRefreshGaveUp:    {StatusAuthorized: StatusError},
	TRefreshRevoked:   {StatusAuthorized: StatusRevoked, StatusError: StatusRevoked},
	TRefreshExpired:   {StatusAuthorized: StatusExpired, StatusError: StatusExpired},
	TAccessExpired:    {StatusAuthorized: StatusExpired, StatusError: StatusExpired},
	TUpstreamRejected: {StatusAuthorized: StatusRevoked, StatusError: StatusRevoked},
	TRevoked: {
		StatusNeedsAuthorization: StatusRevoked, StatusPending: StatusRevoked, StatusAuthorized: StatusRevoked,
		StatusExpired: StatusRevoked, StatusRevoked: StatusRevoked, StatusError: StatusRevoked,
	},
	TModeSwitch: {
		StatusNeedsAuthorization: StatusRevoked, StatusPending: StatusRevoked, StatusAuthorized: StatusRevoked,
		StatusExpired: StatusRevoked, StatusRevoked: StatusRevoked, StatusError: StatusRevoked,
	},
}

// IllegalTransitionError is returned for a transition that the lifecycle
// does not allow from the record's status (typically a race: the record
// was revoked while a refresh was in flight).
type IllegalTransitionError struct {
	Transition Transition
	From       Status
}

func (e *IllegalTransitionError) Error() string {
	return fmt.Sprintf("connections: transition %s is not allowed from status %s", e.Transition, e.From)
}

// next returns the status that t leads to from `from`; prev is the status
// before the pending flow (for restore). An unknown previous status
// restores to NEEDS_AUTHORIZATION.
func next(t Transition, from, prev Status) (Status, error) {
	to, ok := transitions[t][from]
	if !ok {
		return "", &IllegalTransitionError{Transition: t, From: from}
	}
	if to == restore {
		switch prev {
		case StatusNeedsAuthorization, StatusExpired, StatusRevoked, StatusError:
			return prev, nil
		default:
			return StatusNeedsAuthorization, nil
		}
	}
	return to, nil
}
