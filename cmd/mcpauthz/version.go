package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// cmdVersion prints the version, the commit it was built from and the Go
// toolchain, from the binary's build information.
func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("version", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, "Usage: mcpauthz version\n\n"+
			"Prints the mcpauthz version (the module version, or the one set at link\n"+
			"time), the source commit and commit time it was built from (\"modified\"\n"+
			"when the working tree had changes), and the Go version and platform.\n")
	}
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, versionText(version, commit, bi))
	return nil
}

// commit is set at link time where the build has no version control
// information (a container build without .git):
// -ldflags "-X main.commit=$(git rev-parse HEAD)".
var commit = ""

// versionText renders what `mcpauthz version` prints. linkedVersion and
// linkedCommit are the values set with -ldflags -X (empty when not set);
// bi may be nil.
func versionText(linkedVersion, linkedCommit string, bi *debug.BuildInfo) string {
	v, goVersion := linkedVersion, runtime.Version()
	rev, at := linkedCommit, ""
	modified := false
	if bi != nil {
		if v == "" {
			v = bi.Main.Version // "(devel)" for a build from a working tree
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(unknown)"
	}
	commit := "unknown (built without version control information)"
	if rev != "" {
		commit = rev
		if at != "" {
			commit += " " + at
		}
		if modified {
			commit += " (modified)"
		}
	}
	return fmt.Sprintf("mcpauthz %s\n  commit %s\n  go     %s %s/%s\n", v, commit, goVersion, runtime.GOOS, runtime.GOARCH)
}
