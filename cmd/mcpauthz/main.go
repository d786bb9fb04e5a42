// Command mcpauthz is the MCP-aware Envoy ext_authz service.
//
//	mcpauthz demo                      the main job end to end, in one process
//	mcpauthz serve [--config FILE]     run the service (embedded defaults without --config)
//	mcpauthz validate --config FILE    check a config file and exit (--deep: secrets, files, bundles)
//	mcpauthz test DIR / eval ...       policy authoring: Rego tests, offline evaluation
//	mcpauthz envoy generate|validate   Envoy bootstraps from the catalog; validation
//	mcpauthz loadtest [flags]          drive the gRPC service with concurrent Checks
//	mcpauthz version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); without
// it, `mcpauthz version` reports the module version from the build info.
var version = ""

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `mcpauthz — MCP-aware authorization for Envoy ext_authz

Usage:
  mcpauthz demo [--verbose] [--keep-running]
        Everything in one process (development IdP, mcpauthz, an MCP server and
        a development stand-in for Envoy); prints who called what and why.
  mcpauthz serve [--config FILE] [--log-level LEVEL]
        Run the ext_authz gRPC service and the HTTP endpoints. Without --config
        it runs on embedded defaults: an example config, the example RBAC
        bundle and a built-in development identity provider on loopback.
  mcpauthz validate --config FILE [--deep]
        Decode and validate a config file (strict: unknown keys are errors);
        --deep also resolves every secret and file reference serve reads,
        parses key material and compiles local bundles.
  mcpauthz test [--coverage] [--threshold N] [--run REGEX] [-v] DIR...
        Run a policy bundle's Rego tests (OPA's tester), with coverage.
  mcpauthz eval --bundle DIR --request FILE [--config FILE] [--explain] [--format text|json]
        Send one request through the Check pipeline offline; print the input,
        the decision, the trace and what Envoy would do.
  mcpauthz envoy generate --config FILE [flags] | envoy validate [--strict] FILE...
        Render an Envoy bootstrap from the server catalog; validate Envoy YAML.
  mcpauthz loadtest [--duration 5s] [--concurrency 32]
        Measure the gRPC Check path against an empty ext_authz handler in the
        same run; prints throughput, p50 and p99 of both.
  mcpauthz connections list|revoke|rotate-key --config FILE [flags]
        Per-user upstream connections in the config's store: list them (never
        tokens), revoke as an administrator, re-encrypt under the primary key.
  mcpauthz migrate --config FILE
        Bring the configured store's database (postgres or sqlite) to this
        build's schema version without serving (serve also migrates at start).
  mcpauthz dev-idp --listen ADDR --issuer URL     development identity provider
  mcpauthz demo-mcp --listen ADDR                 demo MCP document server
  mcpauthz version                                version, commit and Go version

Every command answers --help.
`

// command is one subcommand: name, what it runs, and whether its help is
// listed (every command answers --help).
type command struct {
	name string
	run  func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands are the subcommands, in the order the usage lists them.
var commands = []command{
	{"demo", cmdDemo},
	{"serve", cmdServe},
	{"validate", cmdValidate},
	{"test", cmdTest},
	{"eval", cmdEval},
	{"envoy", cmdEnvoy},
	{"loadtest", cmdLoadtest},
	{"connections", cmdConnections},
	{"migrate", cmdMigrate},
	{"dev-idp", cmdDevIDP},
	{"demo-mcp", cmdDemoMCP},
	{"version", cmdVersion},
}

// run executes one command line and returns the exit status: 0, 1 when
// the command failed, 2 on a usage error. --help (or -h) prints the
// command's usage on stdout and exits 0.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	case "--version", "-version":
		args[0] = "version"
	}
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == args[0] })
	if i < 0 {
		fmt.Fprintf(stderr, "mcpauthz: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	help := wantsHelp(args[1:])
	if help {
		stderr = stdout // the usage is the answer
	}
	err := commands[i].run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp) && help:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	}
	fmt.Fprintf(stderr, "mcpauthz %s: %v\n", args[0], err)
	return 1
}

// wantsHelp reports a -h/--help flag before the first "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// parseNoArgs parses flags for a command that takes no positional
// arguments. A bad flag or a stray argument prints the usage and is a
// usage error (flag.ErrHelp: exit status 2).
func parseNoArgs(fl *flag.FlagSet, args []string) error {
	if err := fl.Parse(args); err != nil {
		return flag.ErrHelp // the flag package printed the problem and the usage
	}
	if fl.NArg() > 0 {
		fl.Usage()
		return flag.ErrHelp
	}
	return nil
}

// newLogger is the one log format of every command: JSON lines (what log
// collectors parse), at the given level. Durations carry their unit: an
// attribute "timeout" holding a time.Duration is written "timeout_ms" in
// milliseconds (slog would write bare nanoseconds).
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: durationsInMS})), nil
}

// mustLogger is newLogger for a level known to be valid.
func mustLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: durationsInMS}))
}

// durationsInMS writes time.Duration attributes as milliseconds, with a
// _ms suffix on the key.
func durationsInMS(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	key := a.Key
	if !strings.HasSuffix(key, "_ms") {
		key += "_ms"
	}
	return slog.Float64(key, float64(a.Value.Duration())/float64(time.Millisecond))
}

func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
}
