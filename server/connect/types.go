package connect

import (
	"errors"
	"time"
)

// The types below mirror credentials/connections (spec in the connections
// contract) until that package lands; they then become aliases so that
// *connections.Manager satisfies [Manager] directly.

// Status is a connection's lifecycle status.
type Status string

// The statuses a connection can have.
const (
	StatusNeedsAuthorization Status = "NEEDS_AUTHORIZATION"
	StatusPending            Status = "PENDING"
	StatusAuthorized         Status = "AUTHORIZED"
	StatusExpired            Status = "EXPIRED"
	StatusRevoked            Status = "REVOKED"
	StatusError              Status = "ERROR"
)

// Key identifies a connection.
type Key struct{ Org, UserKey, Server string }

// Connection is a record without secrets.
type Connection struct {
	Key                                                                  Key
	Mode                                                                 string
	Status                                                               Status
	Reason                                                               string
	LastError                                                            string
	FailCount                                                            int
	Scopes                                                               []string
	ConnectedAt, UpdatedAt, LastUsedAt, LastRefreshedAt, AccessExpiresAt time.Time
	Generation                                                           int64
}

// Actor says who did something.
type Actor struct{ Kind, ID string }

// Filter selects connections in List.
type Filter struct {
	Org, UserKey, Server string
	Status               Status
	ServiceAccounts      bool
}

// Errors returned by the Manager.
var (
	ErrUnavailable = errors.New("connections: unavailable")
	ErrNotFound    = errors.New("connections: not found")
	ErrForbidden   = errors.New("connections: forbidden")
	ErrFlowExpired = errors.New("connections: flow expired")
)
