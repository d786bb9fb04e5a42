// Package pgtest starts a throwaway PostgreSQL server for tests.
//
// [Start] runs initdb on a new temporary directory and starts the server
// binary on a free loopback port, with its unix socket directory inside
// that temporary directory; the test's cleanup stops it and removes the
// directory. The server is started as a child of the test process with a
// parent-death signal, so a test binary killed by a timeout does not leave
// it running. [Server.NewDatabase] gives each test a fresh, empty database.
//
// The binaries (initdb and postgres) are looked up in PATH and in
// /usr/lib/postgresql/*/bin (newest first); on Debian and Ubuntu they come
// with the package postgresql (apt-get install -y postgresql). When they
// are absent the test is skipped with a message saying so, unless
// MCPAUTHZ_TEST_POSTGRES_REQUIRED=1, which makes it a failure (for CI
// jobs that must not silently skip). MCPAUTHZ_TEST_POSTGRES, a DSN of an
// existing server whose role may create databases, replaces the
// throwaway server.
//
// PostgreSQL refuses to run as root. When the test runs as root (as in
// many CI containers), initdb and postgres run as the user postgres (or,
// without one, nobody) and the temporary directory is given to that user.
//
// The superuser connects over TCP with a random password (scram-sha-256),
// so DSNs carry a password, as in production. Fresh databases use a
// linguistic collation (ICU en-US) when the server has ICU, so code that
// relies on the database's default collation for byte order fails here.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauthz/mcpauthz/internal/randid"
)

// Environment variables.
const (
	// EnvDSN names an existing server to use instead of a throwaway one
	// (a postgres:// URL whose role may CREATE DATABASE).
	EnvDSN = "MCPAUTHZ_TEST_POSTGRES"
	// EnvRequired, set to 1, turns "PostgreSQL is not available" from a
	// skip into a failure.
	EnvRequired = "MCPAUTHZ_TEST_POSTGRES_REQUIRED"
)

// startTimeout bounds initdb plus server start.
const startTimeout = 90 * time.Second

// Server is a running PostgreSQL server for tests.
type Server struct {
	dsn      *url.URL // superuser, database postgres
	password string
	icu      bool
	dbs      atomic.Int64
}

// Option tunes Start.
type Option func(*options)

type options struct{ durable bool }

// Durable keeps the server's durability settings (fsync and synchronous
// commit on, as in production), for benchmarks compared with a store that
// syncs. By default they are off: tests run faster and the data is
// thrown away anyway.
func Durable() Option { return func(o *options) { o.durable = true } }

// Start returns a running server for t, stopped and removed by t's
// cleanup. It skips t when PostgreSQL is not installed (see the package
// comment) and fails it when the server does not start.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		s, err := external(dsn)
		if err != nil {
			t.Fatalf("pgtest: %s: %v", EnvDSN, err)
		}
		return s
	}
	bin, err := Binaries()
	if err != nil {
		if os.Getenv(EnvRequired) == "1" {
			t.Fatalf("pgtest: %v (%s=1)", err, EnvRequired)
		}
		t.Skipf("pgtest: %v", err)
	}
	s, stop, err := start(bin, o)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("pgtest: stop: %v", err)
		}
	})
	return s
}

// DSN is the superuser's connection string for the database postgres.
// It holds the password: do not log it.
func (s *Server) DSN() string { return s.dsn.String() }

// Password is the superuser's password (empty for an external server
// whose DSN has none).
func (s *Server) Password() string { return s.password }

// ICU reports whether fresh databases use the ICU en-US collation.
func (s *Server) ICU() bool { return s.icu }

// NewDatabase creates an empty database, dropped by t's cleanup, and
// returns its DSN (same user and password as DSN).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("t_%d_%d_%s", os.Getpid(), s.dbs.Add(1), randid.Hex(4))
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	stmt := "CREATE DATABASE " + name + " TEMPLATE template0 ENCODING 'UTF8'"
	if s.icu {
		// A linguistic default collation: "a-b" < "aB" < "ab" < "A"
		// would not hold byte order.
		stmt += " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("pgtest: %s: %v", stmt, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u := *s.dsn
	u.Path = "/" + name
	return u.String()
}

// external uses an existing server.
func external(dsn string) (*Server, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("want a postgres:// URL")
	}
	pw, _ := u.User.Password()
	s := &Server{dsn: u, password: pw}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.icu, err = hasICU(ctx, s.DSN()); err != nil {
		return nil, fmt.Errorf("connect: %s", redact(err.Error(), pw))
	}
	return s, nil
}

func hasICU(ctx context.Context, dsn string) (bool, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	var icu bool
	err = conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int >= 150000
		AND EXISTS (SELECT 1 FROM pg_collation WHERE collprovider = 'i')`).Scan(&icu)
	return icu, err
}

// Binaries returns the directory holding initdb and postgres: the one of
// initdb in PATH, else the newest /usr/lib/postgresql/*/bin.
func Binaries() (string, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(r))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	versioned, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(versioned, func(a, b string) int { return majorOf(b) - majorOf(a) })
	dirs = append(dirs, versioned...)
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL is not installed: no initdb and postgres in PATH or /usr/lib/postgresql/*/bin " +
		"(Debian/Ubuntu: apt-get install -y postgresql; or set " + EnvDSN + " to a postgres:// DSN)")
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// runAs is the unprivileged user that runs PostgreSQL when the test runs
// as root (nil otherwise).
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false}, nil
	}
	return nil, errors.New("running as root and there is no user postgres or nobody to run PostgreSQL as (initdb refuses root)")
}

// baseDir is where the temporary directory goes: the system temporary
// directory, unless the unix socket path would be too long there or (as
// root) the unprivileged user could not reach it.
func baseDir(cred *syscall.Credential) string {
	d := os.TempDir()
	if len(d) > 60 {
		return "/tmp"
	}
	if cred != nil {
		for p := d; ; p = filepath.Dir(p) {
			st, err := os.Stat(p)
			if err != nil || st.Mode().Perm()&0o001 == 0 {
				return "/tmp"
			}
			if p == filepath.Dir(p) {
				break
			}
		}
	}
	return d
}

// start initializes and starts a cluster; stop shuts it down and removes
// its directory.
func start(bin string, o options) (*Server, func() error, error) {
	cred, err := runAs()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(baseDir(cred), "pgtest-")
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := chown(dir, cred); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	c := &cluster{bin: bin, dir: dir, data: filepath.Join(dir, "data"), cred: cred, password: randid.Hex(16)}
	if err := c.initdb(ctx); err != nil {
		return nil, nil, err
	}
	if err := c.configure(o); err != nil {
		return nil, nil, err
	}
	s, stop, err := c.run(ctx)
	ok = err == nil
	return s, stop, err
}

// cluster is a database cluster being set up in dir, run as cred (nil:
// as this process).
type cluster struct {
	bin, dir, data string
	cred           *syscall.Credential
	password       string // of the postgres superuser
}

// initdb creates the cluster with a password for postgres.
func (c *cluster) initdb(ctx context.Context) error {
	pwfile := filepath.Join(c.dir, "pwfile")
	if err := writeOwned(pwfile, c.password+"\n", c.cred); err != nil {
		return err
	}
	initdb := exec.CommandContext(ctx, filepath.Join(c.bin, "initdb"),
		"-D", c.data, "-U", "postgres", "--pwfile", pwfile, "-E", "UTF8", "--locale", "C",
		"--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-sync", "--no-instructions")
	prepare(initdb, c.dir, c.cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, tail(out))
	}
	_ = os.Remove(pwfile)
	return nil
}

// configure creates the socket directory and appends the pgtest settings
// to postgresql.conf.
func (c *cluster) configure(o options) error {
	sock := filepath.Join(c.dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return err
	}
	if err := chown(sock, c.cred); err != nil {
		return err
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = '" + sock + "'",
		"max_connections = 200",
		"logging_collector = off",
		"log_min_messages = warning",
	}
	if !o.durable {
		conf = append(conf, "fsync = off", "synchronous_commit = off", "full_page_writes = off")
	}
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# pgtest\n" + strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// run starts postgres on a free port, retrying when another process took
// the port first, and waits until it accepts connections.
func (c *cluster) run(ctx context.Context) (*Server, func() error, error) {
	logPath := filepath.Join(c.dir, "postgres.log")
	var lastErr error
	for range 3 { // a free port may be taken before the server binds it
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		p, err := launch(ctx, c.bin, c.data, c.dir, logPath, port, c.cred)
		if err != nil {
			return nil, nil, err
		}
		u := &url.URL{Scheme: "postgres", User: url.UserPassword("postgres", c.password),
			Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Path: "/postgres", RawQuery: "sslmode=disable"}
		s := &Server{dsn: u, password: c.password}
		if lastErr = p.ready(ctx, s.DSN()); lastErr != nil {
			_ = p.stop()
			log, _ := os.ReadFile(logPath)
			if bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("already in use")) {
				continue
			}
			return nil, nil, fmt.Errorf("postgres did not start: %s\n%s", redact(lastErr.Error(), c.password), tail(log))
		}
		if s.icu, err = hasICU(ctx, s.DSN()); err != nil {
			_ = p.stop()
			return nil, nil, fmt.Errorf("postgres: %s", redact(err.Error(), c.password))
		}
		return s, func() error {
			err := p.stop()
			if rerr := os.RemoveAll(c.dir); err == nil {
				err = rerr
			}
			return err
		}, nil
	}
	return nil, nil, fmt.Errorf("postgres did not start on a free port: %s", redact(lastErr.Error(), c.password))
}

// chown gives path to cred's user and group; nil cred leaves it alone.
func chown(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

// proc is a running postmaster.
type proc struct {
	cmd  *exec.Cmd
	done chan error // the result of Wait
}

// launch starts postgres as a child that the kernel signals (SIGQUIT:
// immediate shutdown) if this process dies. The parent-death signal is
// tied to the thread that forks, so the child is started and waited for
// by one goroutine locked to its thread.
func launch(ctx context.Context, bin, data, dir, logPath string, port int, cred *syscall.Credential) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port))
	prepare(cmd, dir, cred)
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine, after postgres
		err := cmd.Start()
		started <- err
		if err == nil {
			p.done <- cmd.Wait()
		}
		_ = logf.Close()
	}()
	select {
	case err := <-started:
		if err != nil {
			return nil, fmt.Errorf("start postgres: %w", err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return p, nil
}

// ready waits until the server accepts connections (or exits).
func (p *proc) ready(ctx context.Context, dsn string) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, dsn)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case werr := <-p.done:
			p.done <- werr
			return fmt.Errorf("postgres exited: %v", werr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down (fast, then immediate, then kill).
func (p *proc) stop() error {
	for _, sig := range []os.Signal{syscall.SIGINT, syscall.SIGQUIT, syscall.SIGKILL} {
		if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		select {
		case <-p.done:
			return nil
		case <-time.After(10 * time.Second):
		}
	}
	return errors.New("postgres did not exit")
}

// prepare sets the working directory, a minimal environment and, as
// root, the unprivileged user.
func prepare(cmd *exec.Cmd, dir string, cred *syscall.Credential) {
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
}

func writeOwned(path, content string, cred *syscall.Credential) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return chown(path, cred)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func redact(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, "[REDACTED]")
}

// tail is the end of a log, for error messages.
func tail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
