package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The TypeScript SDK client lives in e2e/tsclient: package.json pins
// @modelcontextprotocol/sdk, package-lock.json fixes the tree, client.mjs
// is the driver. tsSDKVersion must match package.json.
const (
	tsClientDir  = "tsclient"
	tsSDKVersion = "1.32.2"
	// npmTimeout bounds `npm ci` (about 40s on a cold cache here).
	npmTimeout = 4 * time.Minute
	// tsStamp, inside node_modules, holds the hash of the package-lock.json
	// it was installed from, so later runs skip npm.
	tsStamp = ".mcpauthz-installed"
)

var tsInstall struct {
	once sync.Once
	skip string // reason to skip, when Node or the registry is unavailable
	err  error
}

// requireTSClient installs e2e/tsclient/node_modules once per test binary
// (npm ci; skipped when node_modules was installed from the same lock
// file) and skips the test when node or npm is missing or the npm registry
// cannot be reached.
func requireTSClient(t *testing.T) string {
	t.Helper()
	tsInstall.once.Do(func() { tsInstall.skip, tsInstall.err = installTSClient() })
	if tsInstall.skip != "" {
		t.Skip(tsInstall.skip)
	}
	if tsInstall.err != nil {
		t.Fatal(tsInstall.err)
	}
	dir, _ := filepath.Abs(tsClientDir)
	return dir
}

func installTSClient() (skip string, err error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "node is not installed: the TypeScript SDK client test needs Node.js >= 18 and npm (Debian: apt-get install nodejs npm)", nil
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "npm is not installed: the TypeScript SDK client test needs Node.js >= 18 and npm (Debian: apt-get install nodejs npm)", nil
	}
	out, err := exec.Command(node, "-p", "process.versions.node").Output()
	if err != nil {
		return "", fmt.Errorf("node -p process.versions.node: %w", err)
	}
	if major, _ := strconv.Atoi(strings.SplitN(strings.TrimSpace(string(out)), ".", 2)[0]); major < 18 {
		return fmt.Sprintf("node %s is too old: @modelcontextprotocol/sdk %s needs Node.js >= 18", strings.TrimSpace(string(out)), tsSDKVersion), nil
	}
	lock, err := os.ReadFile(filepath.Join(tsClientDir, "package-lock.json"))
	if err != nil {
		return "", fmt.Errorf("tsclient: %w", err)
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(tsClientDir, "node_modules", tsStamp)
	if got, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(got)) == want {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--fetch-retries=1", "--fetch-timeout=30000")
	cmd.Dir = tsClientDir
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		msg := log.String()
		for _, sign := range []string{"ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH", "network", "proxy"} {
			if strings.Contains(msg, sign) || ctx.Err() != nil {
				return fmt.Sprintf("npm ci could not reach the npm registry (%s); the TypeScript SDK client test needs @modelcontextprotocol/sdk %s from it: %s", errOr(ctx.Err(), err), tsSDKVersion, firstLines(msg, 4)), nil
			}
		}
		return "", fmt.Errorf("tsclient: npm ci: %w\n%s", err, lastLines(msg, 20))
	}
	pkg, err := os.ReadFile(filepath.Join(tsClientDir, "node_modules", "@modelcontextprotocol", "sdk", "package.json"))
	if err != nil {
		return "", fmt.Errorf("tsclient: npm ci installed no SDK: %w", err)
	}
	var v struct{ Version string }
	if json.Unmarshal(pkg, &v) != nil || v.Version != tsSDKVersion {
		return "", fmt.Errorf("tsclient: npm ci installed @modelcontextprotocol/sdk %q, want %s", v.Version, tsSDKVersion)
	}
	return "", os.WriteFile(stamp, []byte(want+"\n"), 0o644)
}

func errOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tsClient is one run of e2e/tsclient/client.mjs: commands go to its stdin,
// replies and sign-in requests come from its stdout.
type tsClient struct {
	t      *testing.T
	b      *browser
	stdin  io.WriteCloser
	lines  chan []byte
	stderr *lockedWriter
	nextID int
	// authorizations counts the authorization URLs the SDK handed out.
	authorizations int
}

// tsError is an error as the TypeScript SDK threw it: its class name, its
// message and, when present, its code (HTTP status for
// StreamableHTTPError, JSON-RPC code for McpError) and data.
type tsError struct {
	Name    string          `json:"name"`
	Message string          `json:"message"`
	Code    *int            `json:"code"`
	Data    json.RawMessage `json:"data"`
}

func (e tsError) Error() string {
	if e.Code != nil {
		return fmt.Sprintf("%s(code %d): %s", e.Name, *e.Code, e.Message)
	}
	return e.Name + ": " + e.Message
}

func startTSClient(t *testing.T, dir, endpoint string, b *browser) *tsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", "client.mjs", endpoint)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &tsClient{t: t, b: b, stdin: stdin, lines: make(chan []byte, 16), stderr: &lockedWriter{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			c.lines <- bytes.Clone(sc.Bytes())
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() && c.stderr.String() != "" {
			t.Logf("client.mjs stderr:\n%s", lastLines(c.stderr.String(), 30))
		}
	})
	return c
}

// do runs one command and decodes its result into out (may be nil). A
// command that failed returns the *tsError the SDK threw. While waiting,
// it signs in whenever the SDK hands out an authorization URL.
func (c *tsClient) do(ctx context.Context, op string, params map[string]any, out any) error {
	c.t.Helper()
	c.nextID++
	cmd := map[string]any{"id": c.nextID, "op": op}
	for k, v := range params {
		cmd[k] = v
	}
	c.send(cmd)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		var line []byte
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("client.mjs exited during %s; stderr:\n%s", op, lastLines(c.stderr.String(), 30))
			}
			line = l
		case <-ctx.Done():
			c.t.Fatalf("client.mjs: no reply to %s: %v", op, ctx.Err())
		}
		var msg struct {
			Event  string          `json:"event"`
			URL    string          `json:"url"`
			Reply  int             `json:"reply"`
			OK     bool            `json:"ok"`
			Result json.RawMessage `json:"result"`
			Error  *tsError        `json:"error"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			c.t.Fatalf("client.mjs wrote %q: %v", line, err)
		}
		switch {
		case msg.Event == "authorize":
			c.authorizations++
			cb, err := c.b.open(ctx, msg.URL)
			if err != nil {
				c.t.Errorf("sign-in at the IdP: %v", err)
				c.send(map[string]any{"op": "callback", "url": "http://127.0.0.1:33418/callback?error=test_sign_in_failed"})
				continue
			}
			c.send(map[string]any{"op": "callback", "url": cb.String()})
		case msg.Reply == c.nextID:
			if !msg.OK {
				return msg.Error
			}
			if out != nil {
				if err := json.Unmarshal(msg.Result, out); err != nil {
					c.t.Fatalf("%s result %s: %v", op, msg.Result, err)
				}
			}
			return nil
		default:
			c.t.Fatalf("client.mjs wrote an unexpected line %q", line)
		}
	}
}

func (c *tsClient) send(v any) {
	b, _ := json.Marshal(v)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("client.mjs stdin: %v", err)
	}
}

// must runs do and fails the test on error.
func (c *tsClient) must(ctx context.Context, op string, params map[string]any, out any) {
	c.t.Helper()
	if err := c.do(ctx, op, params, out); err != nil {
		c.t.Fatalf("%s: %v", op, err)
	}
}

// lockedWriter collects the driver's stderr while it runs.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
