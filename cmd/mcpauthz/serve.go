package main

import (
	"bytes"
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/mcpauthz/mcpauthz/bundles"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

//go:embed defaults.yaml
var defaultsTemplate string

func cmdServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML); embedded development defaults when empty")
	level := fl.String("log-level", "info", "log level: debug, info, warn, error")
	fl.Usage = printUsage(fl, stderr, "Usage: mcpauthz serve [--config FILE] [--log-level LEVEL]\n\n"+
		"Runs the Envoy ext_authz gRPC service (with grpc.health.v1) and the HTTP\n"+
		"endpoints (/healthz, /readyz, /metrics, RFC 9728 metadata) until SIGTERM.\n"+
		"Without --config it runs on embedded development defaults: the example\n"+
		"RBAC bundle and a built-in development identity provider on loopback,\n"+
		"and prints tokens and a first request to send. Logs are JSON lines on\n"+
		"stderr; the decision log goes where audit.output says.\n\n")
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()

	var cfg *config.Config
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	} else {
		var cleanup func()
		cfg, cleanup, err = embeddedDefaults(log, stderr)
		if err != nil {
			return err
		}
		defer cleanup()
	}
	srv, err := server.New(ctx, cfg, server.Deps{Logger: log})
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}

// devEnv is the embedded development environment: the development
// identity provider on loopback, the example bundle unpacked to a temporary
// directory, and the embedded config rendered around them.
type devEnv struct {
	cfg *config.Config
	idp *devidp.Issuer
	dir string
}

func newDevEnv() (*devEnv, error) {
	idp, err := devidp.New(devidp.Options{TokenTTL: time.Hour})
	if err != nil {
		return nil, err
	}
	issuer, err := idp.Start()
	if err != nil {
		return nil, err
	}
	e := &devEnv{idp: idp}
	if e.dir, err = os.MkdirTemp("", "mcpauthz-bundle-"); err != nil {
		e.Close()
		return nil, err
	}
	if err := writeFS(bundles.FS, "rbac", e.dir); err != nil {
		e.Close()
		return nil, err
	}
	var buf bytes.Buffer
	tmpl := template.Must(template.New("defaults").Parse(defaultsTemplate))
	if err := tmpl.Execute(&buf, map[string]string{"IssuerURL": issuer, "BundleDir": e.dir}); err != nil {
		e.Close()
		return nil, err
	}
	if e.cfg, err = config.Parse(buf.Bytes()); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded defaults: %w", err)
	}
	return e, nil
}

// mint issues a development token for the first server's resource.
func (e *devEnv) mint(sub string, roles []string, scope string) string {
	return e.idp.MustMint(map[string]any{"sub": sub, "aud": e.cfg.Servers[0].Resource, "roles": roles, "scope": scope, "org_id": "acme"})
}

func (e *devEnv) Close() {
	e.idp.Close()
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// embeddedDefaults prepares the development environment for serve and
// tells the user on w how to send a first request.
func embeddedDefaults(log *slog.Logger, w io.Writer) (*config.Config, func(), error) {
	e, err := newDevEnv()
	if err != nil {
		return nil, nil, err
	}
	log.Warn("running on EMBEDDED DEVELOPMENT DEFAULTS: built-in dev identity provider, example RBAC bundle; not for production",
		"issuer", e.idp.URL(), "bundle", e.dir, "resource", e.cfg.Servers[0].Resource)
	printFirstRequest(w, e.cfg, e.mint("alice", []string{"viewer"}, "docs:read"), e.mint("root", []string{"admin"}, "docs:read docs:write docs:admin"))
	return e.cfg, e.Close, nil
}

func writeFS(fsys fs.FS, root, dst string) error {
	return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
