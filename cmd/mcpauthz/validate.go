package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mcpauthz/mcpauthz/server/config"
)

// cmdValidate checks a config file. With --deep it also resolves every
// secret and file reference serve reads (values are never printed), parses
// key material and compiles every local policy bundle, so a deployment
// pipeline catches what would otherwise fail at start.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("validate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	cfgPath := fl.String("config", "", "config file (YAML)")
	deep := fl.Bool("deep", false, "also resolve every secret and file reference serve reads, parse keys and compile every local policy bundle")
	fl.Usage = printUsage(fl, stderr, "Usage: mcpauthz validate --config FILE [--deep]\n\n"+
		"Decodes the config file strictly (an unknown key or a value of the wrong\n"+
		"kind is an error naming its field path and line) and validates all of it,\n"+
		"reporting every problem at once; nothing listens. With --deep it also\n"+
		"does what serve does at start without serving: resolves every secret and\n"+
		"file reference (values are never printed), parses key material and\n"+
		"compiles every local policy bundle. Exit status 1 on any problem.\n\n")
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return fmt.Errorf("--config is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid (%d MCP servers, %d issuers, %d policy bundles)\n",
		*cfgPath, len(cfg.Servers), len(cfg.Identity.Issuers), len(cfg.Policy.Bundles))
	if !*deep {
		return nil
	}
	res := deepCheck(ctx, cfg)
	for _, l := range res.lines {
		fmt.Fprintln(stdout, l)
	}
	if len(res.problems) > 0 {
		for _, p := range res.problems {
			fmt.Fprintln(stderr, "  "+p.Error())
		}
		return fmt.Errorf("%s: %d problem(s) found with --deep", *cfgPath, len(res.problems))
	}
	return nil
}
