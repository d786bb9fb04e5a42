package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/pgtest"
)

// writeMigrateConfig writes a minimal config whose store block is given.
func writeMigrateConfig(t *testing.T, storeBlock string) string {
	t.Helper()
	dir := t.TempDir()
	bundle, err := filepath.Abs("../../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(filepath.Join(dir, "k1"), []byte(base64.StdEncoding.EncodeToString(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`version: 1
identity:
  issuers: [{name: dev, issuer: https://idp.example.com}]
policy:
  bundles: [{path: %s}]
servers:
  - id: docs
    resource: https://mcp.example.com/docs/mcp
    credential: {mode: public}
store:
%s
  encryption:
    keys: [{id: k1, secret: {file: %s}}]
`, bundle, storeBlock, filepath.Join(dir, "k1"))
	path := filepath.Join(dir, "mcpauthz.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMigrateCommand: mcpauthz migrate applies the PostgreSQL migrations
// once, says so without printing the DSN's password, and works on SQLite.
func TestMigrateCommand(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t)
		dsn := srv.NewDatabase(t)
		t.Setenv("MIGRATE_TEST_DSN", dsn)
		cfg := writeMigrateConfig(t, "  driver: postgres\n  dsn: {env: MIGRATE_TEST_DSN}")
		code, out, errOut := runCmd(t, "migrate", "--config", cfg, "--log-level", "info")
		want := fmt.Sprintf("schema migrated from version 0 to %d", store.PostgresSchemaVersion())
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "store postgres postgres://postgres@") {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		if !strings.Contains(errOut, "store: postgres migration applied") {
			t.Errorf("no migration log line at --log-level info:\n%s", errOut)
		}
		if strings.Contains(out+errOut, srv.Password()) {
			t.Fatalf("the password is printed:\n%s\n%s", out, errOut)
		}
		code, out, errOut = runCmd(t, "migrate", "--config", cfg)
		if code != 0 || !strings.Contains(out, "nothing to apply") || errOut != "" {
			t.Fatalf("second run: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		if err := c.QueryRow(context.Background(), `SELECT count(*) FROM mcpauthz.schema_migrations`).Scan(&n); err != nil || n != store.PostgresSchemaVersion() {
			t.Fatalf("schema_migrations: %d rows %v", n, err)
		}
		// A wrong password: a clear failure, the password not echoed.
		bad := strings.Replace(dsn, srv.Password(), "not-the-Password-42", 1)
		t.Setenv("MIGRATE_TEST_DSN", bad)
		code, out, errOut = runCmd(t, "migrate", "--config", cfg)
		if code != 1 || !strings.Contains(errOut, "password authentication failed") || strings.Contains(out+errOut, "not-the-Password-42") {
			t.Fatalf("wrong password: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "state.db")
		cfg := writeMigrateConfig(t, "  driver: sqlite\n  path: "+db)
		code, out, errOut := runCmd(t, "migrate", "--config", cfg)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("store sqlite %s: schema at version %d", db, store.SchemaVersion())) {
			t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
	})
	t.Run("memory", func(t *testing.T) {
		cfg := writeMigrateConfig(t, "  driver: memory")
		if code, _, errOut := runCmd(t, "migrate", "--config", cfg); code != 1 || !strings.Contains(errOut, "nothing to migrate") {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if code, _, errOut := runCmd(t, "migrate"); code != 1 || !strings.Contains(errOut, "--config is required") {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
	})
}
