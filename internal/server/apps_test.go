package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/testutil"
)

// appServer serves cfgText (with {state} replaced) through the whole stack
// and Serve, on a loopback listener. stop shuts it down as a signal would
// and returns Serve's error; cleanup does it too.
type appServer struct {
	srv   *Server
	url   string
	log   *testutil.LogBuffer
	state string
	stop  func() error
}

// appIdentities are the static test identities without root.
var appIdentities = strings.Replace(identitiesTOML, "[[identities.static]]\nname = \"root\"\nuid = 0\ngid = 0\n", "", 1)

// appConfig is a FastCGI app of command at path, run as the account svc
// with extra keys of its own, and a 2s shutdown_timeout (what a reload
// gives the configuration it replaces).
func appConfig(command, path, extra string) string {
	return appIdentities + `
[server]
shutdown_timeout = "2s"

[[app]]
path = "` + path + `"
protocol = "fastcgi"
command = [` + strconv.Quote(command) + `]
run_as = "account"
account = "svc"
` + extra
}

// appState makes a state directory the test identities can traverse.
func appState(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	// t.TempDir's parent is 0700: workers read the document root below it.
	os.Chmod(filepath.Dir(state), 0o755)
	os.Chmod(state, 0o755)
	return state
}

// localServer is the server of cfgText ({state} replaced by state) with
// cells of its own, on an in-process launcher closed at the end of the
// test, and a loopback listener for it. build makes the server of another
// text with the same launcher and options, as a reload does.
type localServer struct {
	srv   *Server
	ln    net.Listener
	logs  *testutil.LogBuffer
	build func(text string) *Server
}

func newLocalServer(t *testing.T, state, cfgText string) *localServer {
	t.Helper()
	parse := func(text string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(strings.ReplaceAll(text, "{state}", state)), "apps.toml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := parse(cfgText)
	cfg.Cells.Root = fmt.Sprintf("suserve-test-%d-%d", os.Getpid(), testSerial.Add(1))
	logs := &testutil.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	launch, err := NewLocal(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(launch.Close)
	opts := launch.Options(log, state)
	build := func(c *config.Config) *Server {
		t.Helper()
		srv, err := New(c, opts)
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &localServer{srv: build(cfg), ln: ln, logs: logs, build: func(text string) *Server {
		t.Helper()
		c := parse(text)
		c.Cells.Root = cfg.Cells.Root
		return build(c)
	}}
}

func startApps(t *testing.T, state, cfgText string) *appServer {
	t.Helper()
	ls := newLocalServer(t, state, cfgText)
	srv, ln, logs := ls.srv, ls.ln, ls.logs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	var once sync.Once
	var serr error
	stop := func() error {
		once.Do(func() { cancel(); serr = <-done })
		return serr
	}
	t.Cleanup(func() { stop() })
	return &appServer{srv: srv, url: "http://" + ln.Addr().String(), log: logs, state: state, stop: stop}
}

// fcgiWorkerBin builds internal/app's FastCGI test worker into a
// root-owned directory that only root can change, as an app's command must
// be.
func fcgiWorkerBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "fcgiworker")
	if out, err := exec.Command("go", "build", "-o", bin, "../app/testdata/fcgiworker").CombinedOutput(); err != nil {
		t.Fatalf("building the FastCGI worker: %v\n%s", err, out)
	}
	os.Chmod(bin, 0o755)
	return bin
}

// procUID is the real uid of pid, from /proc/PID/status.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// procCell is the pids-controller cgroup of pid's cell (the parent of its
// request group), as cells_test.go reads it.
func procCell(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, ":pids:") {
			return filepath.Dir(l[strings.LastIndex(l, ":")+1:])
		}
	}
	t.Fatalf("pid %d is in no pids cgroup:\n%s", pid, b)
	return ""
}

// gone reports whether pid has exited and been reaped.
func gone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}

// dead reports whether pid has exited: reaped, or a zombie waiting for
// init, which reaps the orphans of a killed worker.
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

func TestPHPUnderPHPCGIRunsAsTheAppAccount(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/usr/bin/php-cgi"); err != nil {
		t.Skip("php-cgi is not installed (apt-get install php-cgi)")
	}
	state := appState(t)
	writeProgram(t, filepath.Join(state, "wiki", "index.php"), "<?php header('X-Page: index'); echo 'euid=', posix_geteuid(), ' script=', $_SERVER['SCRIPT_NAME'], ' info=', $_SERVER['PATH_INFO'] ?? '', \"\\n\";\n", 61003, 61003)
	os.Chmod(filepath.Join(state, "wiki", "index.php"), 0o644)
	as := startApps(t, state, appIdentities+`
[[app]]
path = "/wiki/"
protocol = "fastcgi"
dir = "{state}/wiki"
command = ["/usr/bin/php-cgi"]
run_as = "account"
account = "svc"
`)
	for _, tc := range []struct{ path, want string }{
		{"/wiki/", "euid=61003 script=/wiki/index.php info=\n"},
		{"/wiki/index.php/page/one", "euid=61003 script=/wiki/index.php info=/page/one\n"},
	} {
		resp, body := get(t, as.url+tc.path, nil)
		if resp.StatusCode != 200 || body != tc.want || resp.Header.Get("X-Page") != "index" {
			t.Errorf("GET %s: %d %q (X-Page %q), want 200 %q\nlog:\n%s", tc.path, resp.StatusCode, body, resp.Header.Get("X-Page"), tc.want, as.log)
		}
	}
	// A path without its trailing slash is redirected, as a route's is.
	resp, _ := get(t, as.url+"/wiki", func(r *http.Request) {})
	if resp.Request.URL.Path != "/wiki/" {
		t.Errorf("GET /wiki ended at %s, want a redirect to /wiki/", resp.Request.URL.Path)
	}
}

func TestPerUserPoolsRunEachUserInTheirOwnWorkerAndCell(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	state := appState(t)
	if err := os.WriteFile(filepath.Join(state, "htpasswd"), []byte("alice:"+bcryptHash(t, "alicepw")+"\nbob:"+bcryptHash(t, "bobpw")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	as := startApps(t, state, `
[auth]
mode = "basic"
htpasswd = "{state}/htpasswd"

[cells]
backend = "auto"
`+appIdentities+`
[[route]]
path = "/cgi-bin/"
dir = "{state}/cgi-bin"
run_as = "authenticated"

[[app]]
path = "/app/"
protocol = "fastcgi"
command = [`+strconv.Quote(bin)+`]
run_as = "authenticated"
workers = 1
`)
	if as.srv.opts.Cells == nil {
		t.Fatalf("no cells on this host as root: %v", as.srv.opts.Notes)
	}
	pidOf := func(user, pw string) int {
		resp, body := get(t, as.url+"/app/pid", func(r *http.Request) { r.SetBasicAuth(user, pw) })
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q\nlog:\n%s", user, resp.StatusCode, body, as.log)
		}
		pid, err := strconv.Atoi(body)
		if err != nil {
			t.Fatalf("%s: pid %q", user, body)
		}
		return pid
	}
	alice, bob := pidOf("alice", "alicepw"), pidOf("bob", "bobpw")
	if alice == bob {
		t.Fatalf("alice and bob reached the same worker, pid %d", alice)
	}
	if again := pidOf("alice", "alicepw"); again != alice {
		t.Errorf("alice's second request reached pid %d, her worker is %d", again, alice)
	}
	if u := procUID(t, alice); u != 61001 {
		t.Errorf("alice's worker runs as uid %d, want 61001", u)
	}
	if u := procUID(t, bob); u != 61002 {
		t.Errorf("bob's worker runs as uid %d, want 61002", u)
	}
	ca, cb := procCell(t, alice), procCell(t, bob)
	if !strings.Contains(ca, "alice") || !strings.Contains(cb, "bob") || ca == cb {
		t.Errorf("cells: alice's worker in %q, bob's in %q", ca, cb)
	}
	// The status page has a row per user's pool, with its worker.
	admin := httptest.NewServer(as.srv.adminHandler())
	defer admin.Close()
	_, page := get(t, admin.URL+"/", nil)
	for user, pid := range map[string]int{"alice": alice, "bob": bob} {
		row := fmt.Sprintf("<tr><td>/app/</td><td>fastcgi</td><td>%s</td><td>[%d]</td>", user, pid)
		if !strings.Contains(page, row) {
			t.Errorf("the status page has no row %q:\n%s", row, page)
		}
	}

	// Without credentials, or with wrong ones, nobody's worker is reached.
	for _, tc := range []struct {
		name  string
		setup func(*http.Request)
	}{
		{"no credentials", nil},
		{"wrong password", func(r *http.Request) { r.SetBasicAuth("alice", "bobpw") }},
	} {
		resp, _ := get(t, as.url+"/app/pid", tc.setup)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d, want 401 with a challenge", tc.name, resp.StatusCode)
		}
	}

	// Shutdown stops every user's workers: none is left behind.
	if err := as.stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{alice, bob} {
		if !gone(pid) {
			t.Errorf("worker %d still exists after shutdown", pid)
		}
	}
}

func TestAccountAppShutdownLeavesNoWorkerBehind(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	state := appState(t)
	// The command is a script that leaves a child behind and then becomes
	// the worker: stopping the worker must take the child too.
	run := filepath.Join(state, "run")
	os.Mkdir(run, 0o755)
	os.Chown(run, 61003, 61003)
	script := filepath.Join(filepath.Dir(bin), "worker.sh")
	writeProgram(t, script, "#!/bin/sh\nsleep 300 &\necho $! >"+run+"/child.$$\nexec "+bin+"\n", 0, 0)
	as := startApps(t, state, appConfig(script, "/app/", "workers = 3\n"))
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(as.url + "/app/pid")
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	// Requests go to the first idle worker, so the six may have needed
	// fewer than three: wait until every worker answers (its script has
	// written its child's pid by then). Readiness is a state the pool
	// reports only in its stats.
	pool := as.srv.appRoutes[0].account
	for deadline := time.Now().Add(10 * time.Second); pool.Stats().Ready < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("workers not ready after 10 s: %+v\nlog:\n%s", pool.Stats(), as.log)
		}
	}
	pids := pool.Stats().Pids
	var children []int
	for _, pid := range pids {
		if u := procUID(t, pid); u != 61003 {
			t.Errorf("worker %d runs as uid %d, want 61003", pid, u)
		}
		b, err := os.ReadFile(filepath.Join(run, "child."+strconv.Itoa(pid)))
		if err != nil {
			t.Fatalf("worker %d left no child pid: %v", pid, err)
		}
		c, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		children = append(children, c)
	}
	t0 := time.Now()
	if err := as.stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("worker %d still exists after shutdown", pid)
		}
	}
	for _, pid := range children {
		if !dead(pid) {
			t.Errorf("worker's child %d still runs after shutdown", pid)
		}
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("shutdown took %v: the workers should stop at SIGTERM", d)
	}
}

func TestLongestPrefixChoosesBetweenRoutesAndApps(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	state := appState(t)
	writeProgram(t, filepath.Join(state, "cgi", "hello"), helloCGI, 61003, 61003)
	writeProgram(t, filepath.Join(state, "cgi", "app", "hello"), helloCGI, 61003, 61003)
	as := startApps(t, state, appConfig(bin, "/x/app/", `
[[route]]
path = "/x/"
dir = "{state}/cgi"
run_as = "account"
account = "svc"

[[route]]
path = "/x/app/deeper/"
dir = "{state}/cgi/app"
run_as = "account"
account = "svc"
`))
	for _, tc := range []struct{ path, want string }{
		{"/x/hello", "hello\n"},            // the route: the app's prefix does not match
		{"/x/app/pid", "go-fcgi"},          // the app's prefix is longer than the route's
		{"/x/app/deeper/hello", "hello\n"}, // a longer route wins over the app
	} {
		resp, body := get(t, as.url+tc.path, nil)
		got := body
		if resp.Header.Get("X-Worker") != "" {
			got = resp.Header.Get("X-Worker")
		}
		if resp.StatusCode != 200 || got != tc.want {
			t.Errorf("GET %s: %d %q, want %q\nlog:\n%s", tc.path, resp.StatusCode, body, tc.want, as.log)
		}
	}
}

func TestAppCommandsThatBreakPolicyAreRefusedWithTheirCause(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	state := appState(t)
	owned := filepath.Join(state, "bin", "owned")
	writable := filepath.Join(state, "bin", "writable")
	for _, p := range []string{owned, writable} {
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		writeProgram(t, p, string(b), 0, 0)
	}
	os.Chown(owned, 61003, 61003)
	os.Chmod(writable, 0o777)
	var apps strings.Builder
	for i, p := range []string{owned, writable, "/etc/passwd"} {
		fmt.Fprintf(&apps, "[[app]]\npath = \"/a%d/\"\nprotocol = \"fastcgi\"\ncommand = [%q]\nrun_as = \"account\"\naccount = \"svc\"\n\n", i, p)
	}
	as := startApps(t, state, appIdentities+apps.String())
	for i, want := range []string{"refused: owner mismatch", "refused: writable by others", "refused: not executable"} {
		resp, body := get(t, fmt.Sprintf("%s/a%d/", as.url, i), nil)
		if resp.StatusCode < 400 || !strings.Contains(body, "request id") {
			t.Errorf("app %d: %d %q, want an error page with the request id", i, resp.StatusCode, body)
		}
		if as.log.LineWith(want, fmt.Sprintf("/a%d/", i)) == "" {
			t.Errorf("app %d: no log line names %q\nlog:\n%s", i, want, as.log)
		}
	}
}

// frontSpawner stands for a launcher that starts programs but no
// persistent workers.
type frontSpawner struct{ Spawner }

func TestAppsAreRefusedWhereWorkersCannotBeStarted(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[auth]
mode = "proxy"
proxy_header = "X-User"
proxy_trusted = ["127.0.0.1"]

[[app]]
path = "/wiki/"
protocol = "fastcgi"
command = ["/usr/bin/php-cgi"]
run_as = "authenticated"
`), "apps.toml")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := Identities(cfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{Spawner: frontSpawner{}, Identities: ids, StateDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apps.toml: app /wiki/ (line 7)") || !strings.Contains(err.Error(), "frontSpawner") {
		t.Fatalf("New with a launcher that starts no workers: %v; want a refusal naming the file, the app, its line and the launcher", err)
	}
}

func TestHTTPAppIsProxiedToItsAccountsWorkerWithoutCredentials(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "httpworker")
	if out, err := exec.Command("go", "build", "-o", bin, "../app/testdata/httpworker").CombinedOutput(); err != nil {
		t.Fatalf("building the HTTP worker: %v\n%s", err, out)
	}
	os.Chmod(bin, 0o755)
	as := startApps(t, appState(t), appIdentities+`
[[app]]
path = "/app/"
protocol = "http"
command = [`+strconv.Quote(bin)+`]
run_as = "account"
account = "svc"
`)
	resp, body := get(t, as.url+"/app/uid", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "61003 ") {
		t.Fatalf("GET /app/uid: %d %q, want 61003\nlog:\n%s", resp.StatusCode, body, as.log)
	}
	_, body = get(t, as.url+"/app/headers", func(r *http.Request) { r.SetBasicAuth("alice", "secret"); r.Header.Set("X-Custom", "kept") })
	if strings.Contains(body, "Authorization") || !strings.Contains(body, "kept") {
		t.Errorf("headers the worker saw:\n%s\nwant X-Custom and no Authorization", body)
	}
}

// TestAppConcurrencyLetsOneFastCGIWorkerTakeSeveralRequests: with
// concurrency = 2, the one Go net/http/fcgi worker (which serves each
// connection on its own) holds two requests at once, and with max_queue = 0
// a third is refused with the queue's cause. With the FastCGI default of 1,
// the second request would be the refused one.
func TestAppConcurrencyLetsOneFastCGIWorkerTakeSeveralRequests(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	as := startApps(t, appState(t), appConfig(bin, "/app/", "workers = 1\nconcurrency = 2\nmax_queue = 0\n"))
	if code, body := fetch(as.url + "/app/hello"); code != 200 {
		t.Fatalf("the worker does not start: %d %q", code, body)
	}
	// Two requests hold the worker until their bodies end.
	body1, held1 := holdWorker(as.url + "/app/block")
	body2, held2 := holdWorker(as.url + "/app/block")
	waitInFlight(t, as.srv, 2, held1, held2)
	if code, body := fetch(as.url + "/app/hello"); code != http.StatusServiceUnavailable || !strings.Contains(body, "queue full") {
		t.Errorf("a third request: %d %q, want 503 queue full", code, body)
	}
	body1.Close()
	body2.Close()
	for _, held := range []chan string{held1, held2} {
		if d := <-held; d != "200 unblocked" {
			t.Errorf("a held request ended with %q", d)
		}
	}
}
