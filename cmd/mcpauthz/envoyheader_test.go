package main

import (
	"regexp"
	"strings"
	"testing"
)

var socketAddrRE = regexp.MustCompile(`socket_address: \{ address: "?([^",]+)"?, port_value: (\d+) \}`)

// TestGeneratedHeaderNamesTheAddressesUsed: the options the generated
// file's header records are the addresses it uses, and generating with
// them gives the same file.
func TestGeneratedHeaderNamesTheAddressesUsed(t *testing.T) {
	for _, args := range [][]string{
		{"--config", "config.example.yaml"}, // listen.grpc 0.0.0.0:9191: Envoy dials 127.0.0.1
		{"--config", "config.example.yaml", "--authz", "mcpauthz:9191", "--listen", "127.0.0.1:10001"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runCmd(t, append([]string{"envoy", "generate"}, args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var opts []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "#   --authz ") {
					opts = strings.Fields(strings.TrimPrefix(l, "#"))
				}
			}
			if len(opts) != 6 {
				t.Fatalf("no options line in the header:\n%s", out[:min(len(out), 600)])
			}
			used := map[string]bool{}
			for _, m := range socketAddrRE.FindAllStringSubmatch(out, -1) {
				used[m[1]+":"+m[2]] = true
			}
			for i := 1; i < len(opts); i += 2 {
				if !used[opts[i]] {
					t.Errorf("header says %s %s, but the file uses only %v", opts[i-1], opts[i], used)
				}
			}
			code, again, errOut := runCmd(t, append([]string{"envoy", "generate", "--config", "config.example.yaml"}, opts...)...)
			if code != 0 || again != out {
				t.Errorf("generating with the header's options gives another file (exit %d) %s", code, errOut)
			}
		})
	}
}
