package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/server/config"
)

const (
	envoyGenerateUsage = `  mcpauthz envoy generate --config FILE [--mtls] [--upstream ID=HOST:PORT ...]
        [--authz HOST:PORT] [--authz-http HOST:PORT] [--listen ADDR] [--admin-port N] [-o FILE]
      Render an Envoy v3 bootstrap for the config's server catalog: one route
      per server (context_extensions mcp_server=ID), RFC 9728 metadata paths
      without ext_authz, ext_authz to mcpauthz failing closed. The output is
      validated before it is written.
`
	envoyValidateUsage = `  mcpauthz envoy validate [--strict] [--config FILE] FILE...
      Check Envoy bootstrap YAML against Envoy's own proto schema and
      validation rules (go-control-plane); every problem is printed with its
      field path and line. --strict also checks the settings mcpauthz relies on
      (fail closed, whole body as bytes, path normalisation, metadata-only
      ext_authz exemptions, mcp_server on every route).
`
	envoyUsage = "Usage:\n" + envoyGenerateUsage + envoyValidateUsage
)

// subUsage prints one subcommand's usage and its flags.
func subUsage(fs *flag.FlagSet, w io.Writer, text string) func() {
	return printUsage(fs, w, "Usage:\n"+text+"\nFlags:\n")
}

// printUsage prints text, then the flags.
func printUsage(fs *flag.FlagSet, w io.Writer, text string) func() {
	return func() {
		fmt.Fprint(w, text)
		fs.PrintDefaults()
	}
}

// cmdEnvoy dispatches `mcpauthz envoy generate|validate`.
func cmdEnvoy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, envoyUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "generate":
		return cmdEnvoyGenerate(args[1:], stdout, stderr)
	case "validate":
		return cmdEnvoyValidate(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, envoyUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "mcpauthz envoy: unknown subcommand %q\n\n%s", args[0], envoyUsage)
		return flag.ErrHelp
	}
}

// upstreamFlags collects repeated --upstream ID=HOST:PORT values.
type upstreamFlags map[string]string

func (u upstreamFlags) String() string {
	keys := make([]string, 0, len(u))
	for k := range u {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + u[k]
	}
	return strings.Join(parts, ",")
}

func (u upstreamFlags) Set(v string) error {
	id, addr, ok := strings.Cut(v, "=")
	if !ok || id == "" || addr == "" {
		return fmt.Errorf("want ID=HOST:PORT, got %q", v)
	}
	if _, dup := u[id]; dup {
		return fmt.Errorf("server %q given twice", id)
	}
	if _, err := envoy.ParseUpstream(addr); err != nil {
		return err
	}
	u[id] = addr
	return nil
}

// envoyGenerateFlags are `envoy generate`'s flags.
type envoyGenerateFlags struct {
	cfgPath, out              string
	mtls                      bool
	tlsCert, tlsKey, clientCA string
	ups                       upstreamFlags
	authz, authzHTTP, listen  string
	adminPort                 int
}

func cmdEnvoyGenerate(args []string, stdout, stderr io.Writer) error {
	f, err := parseEnvoyGenerateFlags(args, stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		return err
	}
	opts, err := f.options(cfg)
	if err != nil {
		return err
	}
	servers := make([]envoy.CatalogServer, len(cfg.Servers))
	for i, s := range cfg.Servers {
		servers[i] = envoy.CatalogServer{ID: s.ID, Resource: s.Resource, Host: s.Match.Host, PathPrefix: s.Match.PathPrefix, AllowedOrigins: s.AllowedOrigins}
	}
	y, err := envoy.GenerateFromCatalog(servers, opts)
	if err != nil {
		return err
	}
	header := generatedHeader(f.cfgPath, f.mtls, f.ups, opts)
	y = append([]byte(header), stripLeadingComments(y)...)
	if f.out == "" {
		_, err = stdout.Write(y)
		return err
	}
	if err := os.WriteFile(f.out, y, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", f.out, err)
	}
	fmt.Fprintf(stderr, "wrote %s (%d servers)\n", f.out, len(servers))
	return nil
}

func parseEnvoyGenerateFlags(args []string, stderr io.Writer) (*envoyGenerateFlags, error) {
	f := &envoyGenerateFlags{ups: upstreamFlags{}}
	fs := flag.NewFlagSet("envoy generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.cfgPath, "config", "", "mcpauthz config file (required)")
	fs.BoolVar(&f.mtls, "mtls", false, "TLS listener requiring client certificates (SPIFFE trust domains from identity.spiffe)")
	fs.StringVar(&f.tlsCert, "tls-cert", "/etc/envoy/tls/server.crt", "with --mtls: server certificate chain")
	fs.StringVar(&f.tlsKey, "tls-key", "/etc/envoy/tls/server.key", "with --mtls: server private key")
	fs.StringVar(&f.clientCA, "client-ca", "/etc/envoy/tls/client-ca.crt", "with --mtls: CA bundle for client certificates")
	fs.Var(f.ups, "upstream", "ID=HOST:PORT (or http(s)://HOST:PORT) upstream for server ID; repeatable (default: the resource URL's host)")
	fs.StringVar(&f.authz, "authz", "", "mcpauthz gRPC address as Envoy reaches it (default: listen.grpc, 127.0.0.1 for a wildcard host)")
	fs.StringVar(&f.authzHTTP, "authz-http", "", "mcpauthz HTTP address for RFC 9728 metadata (default: --authz host, listen.http port)")
	fs.StringVar(&f.listen, "listen", "0.0.0.0:10000", "Envoy listener address")
	fs.IntVar(&f.adminPort, "admin-port", 9901, "Envoy admin port (bound to 127.0.0.1)")
	fs.StringVar(&f.out, "o", "", "write to FILE instead of stdout")
	fs.Usage = subUsage(fs, stderr, envoyGenerateUsage)
	if err := fs.Parse(args); err != nil {
		return nil, flag.ErrHelp // the flag package printed the problem and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n", fs.Args())
		return nil, flag.ErrHelp
	}
	if f.cfgPath == "" {
		return nil, errors.New("--config is required")
	}
	return f, nil
}

// options derives the generator's options from the flags and cfg.
func (f *envoyGenerateFlags) options(cfg *config.Config) (envoy.GenerateOptions, error) {
	opts := envoy.GenerateOptions{
		AdminPort:       f.adminPort,
		Upstreams:       f.ups,
		MaxRequestBytes: cfg.MCP.MaxBodyBytes,
	}
	var err error
	if opts.ListenAddr, opts.ListenPort, err = splitAddr(f.listen, "0.0.0.0"); err != nil {
		return opts, fmt.Errorf("--listen: %w", err)
	}
	authzAddr := f.authz
	if authzAddr == "" {
		authzAddr = cfg.Listen.GRPC
	}
	if opts.AuthzHost, opts.AuthzPort, err = splitAddr(authzAddr, "127.0.0.1"); err != nil {
		return opts, fmt.Errorf("--authz: %w", err)
	}
	if f.authzHTTP != "" {
		if opts.MetadataHost, opts.MetadataPort, err = splitAddr(f.authzHTTP, "127.0.0.1"); err != nil {
			return opts, fmt.Errorf("--authz-http: %w", err)
		}
	} else {
		if _, opts.MetadataPort, err = splitAddr(cfg.Listen.HTTP, "127.0.0.1"); err != nil {
			return opts, fmt.Errorf("listen.http: %w", err)
		}
		opts.MetadataHost = opts.AuthzHost
	}
	if f.mtls {
		opts.MTLS = &envoy.MTLS{
			CertChainFile: f.tlsCert, PrivateKeyFile: f.tlsKey, ClientCAFile: f.clientCA,
			TrustDomains: cfg.Identity.SPIFFE.TrustDomains,
		}
	}
	return opts, nil
}

// generatedHeader records how a file was generated, so it can be redone.
// The addresses are the ones the file uses (a wildcard listen.grpc host
// becomes 127.0.0.1), so the options given reproduce it.
func generatedHeader(cfgPath string, mtls bool, ups upstreamFlags, o envoy.GenerateOptions) string {
	var b strings.Builder
	b.WriteString("# Envoy v3 bootstrap generated by `mcpauthz envoy generate` from " + filepath.Base(cfgPath) + ";\n")
	b.WriteString("# regenerate rather than edit. Options used:\n")
	fmt.Fprintf(&b, "#   --authz %s --authz-http %s --listen %s\n", net.JoinHostPort(o.AuthzHost, strconv.Itoa(o.AuthzPort)),
		net.JoinHostPort(o.MetadataHost, strconv.Itoa(o.MetadataPort)), net.JoinHostPort(o.ListenAddr, strconv.Itoa(o.ListenPort)))
	if len(ups) > 0 {
		b.WriteString("#  ")
		keys := strings.Split(ups.String(), ",")
		for _, k := range keys {
			b.WriteString(" --upstream " + k)
		}
		b.WriteString("\n")
	}
	if mtls {
		b.WriteString("#   --mtls (client certificates required)\n")
	}
	b.WriteString("# ext_authz fails closed, sees whole bodies, and is off only for the\n")
	b.WriteString("# RFC 9728 metadata paths; see envoy/envoy.yaml in the mcpauthz repo for\n")
	b.WriteString("# what each setting is for.\n")
	return b.String()
}

// stripLeadingComments drops the template's own comment header.
func stripLeadingComments(y []byte) []byte {
	for len(y) > 0 && y[0] == '#' {
		i := strings.IndexByte(string(y), '\n')
		if i < 0 {
			return nil
		}
		y = y[i+1:]
	}
	return y
}

// splitAddr splits HOST:PORT; an empty or wildcard host becomes def.
func splitAddr(addr, def string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not HOST:PORT", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = def
	}
	return host, p, nil
}

func cmdEnvoyValidate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("envoy validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	strict := fs.Bool("strict", false, "also require the settings mcpauthz relies on")
	cfgPath := fs.String("config", "", "mcpauthz config whose headers.prefix and headers.strip the ext_authz filter must not hide (with --strict; default prefix x-mcp-)")
	fs.Usage = subUsage(fs, stderr, envoyValidateUsage)
	if err := fs.Parse(args); err != nil {
		return flag.ErrHelp // the flag package printed the problem and usage
	}
	var so envoy.StrictOptions
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return fmt.Errorf("mcpauthz envoy validate: %w", err)
		}
		so = envoy.StrictOptions{IdentityHeaderPrefix: cfg.Headers.Prefix, StripHeaders: cfg.Headers.Strip}
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, "mcpauthz envoy validate: no files given\n\n"+envoyUsage)
		return flag.ErrHelp
	}
	bad := 0
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			bad++
			continue
		}
		doc, err := envoy.ParseBootstrapDocument(data)
		var issues []envoy.Issue
		var ve *envoy.ValidationError
		switch {
		case errors.As(err, &ve):
			issues = ve.Issues
		case err != nil:
			issues = []envoy.Issue{{Message: err.Error()}}
		case *strict:
			issues = doc.SecurityIssues(so)
		}
		if len(issues) == 0 {
			fmt.Fprintf(stdout, "%s: valid\n", f)
			continue
		}
		bad++
		for _, is := range issues {
			fmt.Fprintf(stderr, "%s: %s\n", f, is)
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d files invalid", bad, fs.NArg())
	}
	return nil
}
