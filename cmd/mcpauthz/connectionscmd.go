package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/server/config"
)

const (
	connectionsListUsage = `  mcpauthz connections list --config FILE [--server ID] [--org ORG] [--user KEY | --service-accounts]
        [--status STATUS] [--format table|json]
      List the stored per-user connections (and organizations' admin-authorized
      service-account connections) in the config's store: server, organization,
      user key, mode, status, reason and times. Tokens are never shown.
`
	connectionsRevokeUsage = `  mcpauthz connections revoke --config FILE --org ORG (--user KEY | --service-account)
        [--server ID] [--reason CODE]
      Revoke connections as an administrator: the stored tokens are deleted at
      once (the next call gets the connect link again), the provider's
      revocation endpoint is called when configured, and an audit event names
      the actor admin:cli. Without --server every server of that user (or of
      the organization's service accounts) is revoked.
`
	connectionsRotateUsage = `  mcpauthz connections rotate-key --config FILE
      Re-encrypt every stored connection (tokens, pending flows, links) and the
      built-in issuer's generated keys under store.encryption's primary key.
      Rotation: add the new key, make it primary, run this, then remove the
      old key. Safe while mcpauthz is serving.
`
	connectionsUsage = "Usage:\n" + connectionsListUsage + connectionsRevokeUsage + connectionsRotateUsage
)

// cliActor is the audit actor of the CLI's revocations ("admin:cli").
var cliActor = connections.Actor{Kind: "admin", ID: "cli"}

// cmdConnections dispatches `mcpauthz connections list|revoke|rotate-key`.
func cmdConnections(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, connectionsUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "list":
		return cmdConnectionsList(ctx, args[1:], stdout, stderr)
	case "revoke":
		return cmdConnectionsRevoke(ctx, args[1:], stdout, stderr)
	case "rotate-key":
		return cmdConnectionsRotateKey(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, connectionsUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "mcpauthz connections: unknown subcommand %q\n\n%s", args[0], connectionsUsage)
		return flag.ErrHelp
	}
}

// connStore is the configured store with a connections manager on it.
type connStore struct {
	m     *connections.Manager
	st    store.Store
	ring  *store.KeyRing
	close func()
}

// openConnections opens the config's store. register declares the
// config's connection-backed servers, so revocations reach the providers'
// RFC 7009 endpoints (a server that cannot be registered, e.g. because
// its client secret is not readable here, is revoked locally only).
func openConnections(ctx context.Context, path string, register bool, stderr io.Writer) (*connStore, error) {
	if path == "" {
		return nil, errors.New("--config is required")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if d := cmp.Or(cfg.Store.Driver, store.DriverMemory); d == store.DriverMemory {
		return nil, fmt.Errorf("%s: store.driver is %q: connections then live inside the serving process only; "+
			"the connections commands work on a shared store (store.driver: sqlite or postgres)", path, d)
	}
	quiet := slog.New(slog.DiscardHandler)
	st, ring, err := store.Open(ctx, cfg.Store, store.Options{Logger: quiet, PurgeInterval: -1})
	if err != nil {
		return nil, err
	}
	log := mustLogger(stderr, slog.LevelWarn)
	audit := mustLogger(stderr, slog.LevelInfo)
	ccfg := cfg.Connections
	if ccfg.PublicURL == "" {
		// No server needs connections any more; the CLI mints no links,
		// so any valid URL lets it read and revoke what is left.
		ccfg.PublicURL = "http://127.0.0.1"
	}
	m, err := connections.New(ctx, ccfg, connections.Options{
		Store: st, Cipher: ring, Logger: log,
		Audit: func(e connections.Event) {
			audit.Info("connection event", "type", e.Type, "server", e.Key.Server, "org", e.Key.Org, "user_key", e.Key.UserKey,
				"actor", e.Actor.Kind+":"+e.Actor.ID, "from", string(e.From), "to", string(e.To), "reason", e.Reason)
		},
	})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	if register {
		for _, sc := range cfg.Servers {
			for _, c := range append([]outbound.Config{sc.Credential}, sc.CredentialOptions...) {
				mode, p, ok := c.Connection()
				if !ok {
					continue
				}
				if err := m.Register(sc.ID, mode, p); err != nil {
					log.Warn("server not registered: its connections are revoked here without telling the provider", "server", sc.ID, "err", err)
				}
				break
			}
		}
	}
	return &connStore{m: m, st: st, ring: ring, close: func() { _ = st.Close() }}, nil
}

// validStatus reports whether s names a connection status.
func validStatus(s string) bool {
	return slices.Contains([]connections.Status{
		connections.StatusNeedsAuthorization, connections.StatusPending, connections.StatusAuthorized,
		connections.StatusExpired, connections.StatusRevoked, connections.StatusError,
	}, connections.Status(s))
}

func cmdConnectionsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("connections list", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML) naming the store")
	server := fl.String("server", "", "only this server id")
	org := fl.String("org", "", "only this organization")
	user := fl.String("user", "", "only this user key (as listed, e.g. dev|acme|alice)")
	sa := fl.Bool("service-accounts", false, "only organizations' admin-authorized service-account connections")
	status := fl.String("status", "", "only this status (NEEDS_AUTHORIZATION, PENDING, AUTHORIZED, EXPIRED, REVOKED, ERROR)")
	format := fl.String("format", "table", "table or json")
	fl.Usage = subUsage(fl, stderr, connectionsListUsage)
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	st := strings.ToUpper(*status)
	switch {
	case *format != "table" && *format != "json":
		return fmt.Errorf("--format: %q is not table or json", *format)
	case st != "" && !validStatus(st):
		return fmt.Errorf("--status: %q is not a connection status", *status)
	case *sa && *user != "":
		return errors.New("--user and --service-accounts exclude each other")
	}
	cs, err := openConnections(ctx, *cfgPath, false, stderr)
	if err != nil {
		return err
	}
	defer cs.close()
	conns, err := cs.m.List(ctx, connections.Filter{Org: *org, UserKey: *user, Server: *server,
		Status: connections.Status(st), ServiceAccounts: *sa})
	if err != nil {
		return err
	}
	if *format == "json" {
		return writeConnectionsJSON(stdout, conns)
	}
	writeConnectionsTable(stdout, conns)
	return nil
}

// connectionView is one listed connection: metadata only, no token.
type connectionView struct {
	Server          string   `json:"server"`
	Org             string   `json:"org"`
	UserKey         string   `json:"user_key"` // "" for a service-account connection
	Mode            string   `json:"mode"`
	Status          string   `json:"status"`
	Reason          string   `json:"reason,omitempty"`
	LastError       string   `json:"last_error,omitempty"`
	FailCount       int      `json:"fail_count,omitempty"`
	Scopes          []string `json:"scopes"`
	ConnectedAt     string   `json:"connected_at,omitempty"`
	UpdatedAt       string   `json:"updated_at,omitempty"`
	LastUsedAt      string   `json:"last_used_at,omitempty"`
	LastRefreshedAt string   `json:"last_refreshed_at,omitempty"`
	AccessExpiresAt string   `json:"access_expires_at,omitempty"`
	Generation      int64    `json:"generation"`
}

func viewOf(c connections.Connection) connectionView {
	return connectionView{
		Server: c.Key.Server, Org: c.Key.Org, UserKey: c.Key.UserKey, Mode: c.Mode, Status: string(c.Status),
		Reason: c.Reason, LastError: c.LastError, FailCount: c.FailCount, Scopes: append([]string{}, c.Scopes...),
		ConnectedAt: stamp(c.ConnectedAt), UpdatedAt: stamp(c.UpdatedAt), LastUsedAt: stamp(c.LastUsedAt),
		LastRefreshedAt: stamp(c.LastRefreshedAt), AccessExpiresAt: stamp(c.AccessExpiresAt), Generation: c.Generation,
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func writeConnectionsJSON(w io.Writer, conns []connections.Connection) error {
	out := make([]connectionView, 0, len(conns))
	for _, c := range conns {
		out = append(out, viewOf(c))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeConnectionsTable(w io.Writer, conns []connections.Connection) {
	if len(conns) == 0 {
		fmt.Fprintln(w, "No connections.")
		return
	}
	dash := func(s string) string { return cmp.Or(s, "-") }
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tORG\tUSER\tMODE\tSTATUS\tREASON\tCONNECTED\tUPDATED\tLAST USED\tLAST REFRESHED\tEXPIRES")
	for _, c := range conns {
		v := viewOf(c)
		user := v.UserKey
		if user == "" {
			user = "(organization)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Server, v.Org, user, dash(v.Mode), v.Status, dash(v.Reason),
			dash(v.ConnectedAt), dash(v.UpdatedAt), dash(v.LastUsedAt), dash(v.LastRefreshedAt), dash(v.AccessExpiresAt))
	}
	_ = tw.Flush()
}

var reasonCode = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

func cmdConnectionsRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("connections revoke", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML) naming the store")
	org := fl.String("org", "", "the organization (required)")
	user := fl.String("user", "", "the user key (as `connections list` shows it)")
	sa := fl.Bool("service-account", false, "the organization's admin-authorized service-account connection instead of a user's")
	server := fl.String("server", "", "only this server id (default: every server)")
	reason := fl.String("reason", "admin_revoked", "reason recorded with the revocation (snake_case)")
	fl.Usage = subUsage(fl, stderr, connectionsRevokeUsage)
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	switch {
	case *org == "":
		return errors.New("--org is required")
	case (*user == "") == !*sa:
		return errors.New("exactly one of --user KEY and --service-account is required")
	case !reasonCode.MatchString(*reason):
		return fmt.Errorf("--reason: %q is not a snake_case code (a-z, 0-9, _; at most 64)", *reason)
	}
	cs, err := openConnections(ctx, *cfgPath, true, stderr)
	if err != nil {
		return err
	}
	defer cs.close()
	conns, err := cs.m.List(ctx, connections.Filter{Org: *org, UserKey: *user, Server: *server, ServiceAccounts: *sa})
	if err != nil {
		return err
	}
	who := "user " + *user
	if *sa {
		who = "the organization's service account"
	}
	if len(conns) == 0 {
		where := "any server"
		if *server != "" {
			where = "server " + *server
		}
		return fmt.Errorf("no connection of %s in organization %s for %s", who, *org, where)
	}
	var errs []error
	for _, c := range conns {
		was := c.Status
		if err := cs.m.Revoke(ctx, c.Key, cliActor, *reason); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Key.Server, err))
			continue
		}
		if was == connections.StatusRevoked {
			fmt.Fprintf(stdout, "%s: %s in %s: already revoked\n", c.Key.Server, who, c.Key.Org)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s in %s: revoked (was %s)\n", c.Key.Server, who, c.Key.Org, was)
	}
	return errors.Join(errs...)
}

// mintKeysPrefix holds the built-in issuer's generated signing keys
// (credentials/mint), sealed with aad = their store key.
const mintKeysPrefix = "mint/keys/"

func cmdConnectionsRotateKey(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("connections rotate-key", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML) naming the store and its keys")
	fl.Usage = subUsage(fl, stderr, connectionsRotateUsage)
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	cs, err := openConnections(ctx, *cfgPath, false, stderr)
	if err != nil {
		return err
	}
	defer cs.close()
	n, err := cs.m.RotateKey(ctx)
	if err != nil {
		return fmt.Errorf("re-encrypted %d connection records before failing: %w", n, err)
	}
	k, err := store.Reseal(ctx, cs.st, cs.ring, mintKeysPrefix)
	if err != nil {
		return fmt.Errorf("re-encrypted %d connection records, then the issuer keys failed: %w", n, err)
	}
	fmt.Fprintf(stdout, "re-encrypted %d connection records and %d issuer keys under key %s\n", n, k, cs.ring.Primary())
	return nil
}
