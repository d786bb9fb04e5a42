package connect

import "github.com/mcpauthz/mcpauthz/credentials/connections"

// The connections types the pages use, so *connections.Manager satisfies
// [Manager] directly.
type (
	Status     = connections.Status
	Key        = connections.Key
	Connection = connections.Connection
	Actor      = connections.Actor
	Filter     = connections.Filter
	Event      = connections.Event
)

// The modes of ServerInfo.Mode.
const (
	ModeIndividual     = connections.ModeIndividual
	ModeServiceAccount = connections.ModeServiceAccount
)

// The statuses a connection can have.
const (
	StatusNeedsAuthorization = connections.StatusNeedsAuthorization
	StatusPending            = connections.StatusPending
	StatusAuthorized         = connections.StatusAuthorized
	StatusExpired            = connections.StatusExpired
	StatusRevoked            = connections.StatusRevoked
	StatusError              = connections.StatusError
)

// Errors of the connections manager the pages tell apart.
var (
	ErrUnavailable    = connections.ErrUnavailable
	ErrNotFound       = connections.ErrNotFound
	ErrForbidden      = connections.ErrForbidden
	ErrFlowExpired    = connections.ErrFlowExpired
	ErrProviderDenied = connections.ErrProviderDenied
)

var _ Manager = (*connections.Manager)(nil)
