package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/server/config"
)

const migrateUsage = `  mcpauthz migrate --config FILE
      Bring the configured store's database (store.driver postgres or sqlite)
      to this build's schema version and exit, without serving. serve runs
      the same migrations at start; run this ahead of a rollout when the
      serving role should not change the schema, or to see what a new build
      will apply. Replicas migrating at once apply each migration once (a
      PostgreSQL advisory lock); a database migrated by a newer build is
      refused. The connection string (dsn) is never printed.
`

// cmdMigrate runs the store's versioned migrations.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML) naming the store")
	logLevel := fl.String("log-level", "warn", "log level of the migration log lines on stderr (info lists each migration applied)")
	fl.Usage = subUsage(fl, stderr, migrateUsage)
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return errors.New("--config is required")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext(ctx)
	defer cancel()
	m, err := store.Migrate(ctx, cfg.Store, store.Options{Logger: log})
	if err != nil {
		return err
	}
	switch {
	case m.From < 0:
		fmt.Fprintf(stdout, "store %s %s: schema at version %d\n", m.Driver, m.Database, m.To)
	case m.From == m.To:
		fmt.Fprintf(stdout, "store %s %s: schema at version %d, nothing to apply\n", m.Driver, m.Database, m.To)
	default:
		fmt.Fprintf(stdout, "store %s %s: schema migrated from version %d to %d\n", m.Driver, m.Database, m.From, m.To)
	}
	return nil
}
