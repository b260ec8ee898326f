package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/testutil"
)

var testSerial atomic.Int64

type testServer struct {
	*httptest.Server
	srv   *Server
	log   *testutil.LogBuffer
	state string
}

// startConfig serves cfg through the whole stack on a loopback listener;
// demo writes the demo programs into the state directory.
func startConfig(t *testing.T, cfg *config.Config, state string, demo *Demo) *testServer {
	t.Helper()
	logs := &testutil.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	if demo != nil {
		if err := WriteDemoPrograms(state); err != nil {
			t.Fatal(err)
		}
	}
	// Each test has its own cell subtree: tests of other packages hold theirs.
	cfg.Cells.Root = fmt.Sprintf("suserve-test-%d-%d", os.Getpid(), testSerial.Add(1))
	launch, err := NewLocal(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(launch.Close)
	opts := launch.Options(log, state)
	opts.Demo = demo
	srv, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &testServer{Server: ts, srv: srv, log: logs, state: state}
}

func get(t *testing.T, url string, setup func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// demoServer is the demo as `go run ./cmd/suserve` serves it for the user
// running the tests: as root with the demo identities, otherwise as self.
func demoServer(t *testing.T) (*testServer, []DemoIdentity) {
	state := t.TempDir()
	cfg := config.Default()
	cfg.CGI.HeaderTimeout = config.Duration(time.Second)
	d := &Demo{Self: SelfName()}
	if os.Geteuid() == 0 {
		var err error
		if cfg, d.Identities, err = RootDemo(state, cfg, "61050"); err != nil {
			t.Fatal(err)
		}
	}
	return startConfig(t, cfg, state, d), d.Identities
}

func TestDemoDiagnosesEveryBrokenProgram(t *testing.T) {
	ts, _ := demoServer(t)
	cases := []struct {
		program string
		status  int
		cause   string // in the page and the access log
		detail  string // in the page (the demo shows details)
	}{
		{"bad-interpreter", 502, "bad interpreter", "/usr/bin/no-such-interpreter"},
		{"windows", 502, "carriage return", "Windows line endings"},
		{"exit3", 502, "exited", "status 3"},
		{"signal", 502, "signal", "SIGSEGV"},
		{"malformed", 502, "malformed header", "Hello, this is not a header"},
		{"stall", 504, "header timeout", ""},
		{"no-such-program", 404, "", ""},
	}
	for _, c := range cases {
		t.Run(c.program, func(t *testing.T) {
			resp, body := get(t, ts.URL+"/cgi-bin/"+c.program, nil)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; page:\n%s", resp.StatusCode, c.status, body)
			}
			if c.cause == "" {
				return
			}
			if !strings.Contains(body, c.cause) || !strings.Contains(body, c.detail) {
				t.Errorf("page lacks %q / %q:\n%s", c.cause, c.detail, body)
			}
			id := between(body, "request id: ", "\n")
			if id == "" {
				t.Fatalf("page has no request id:\n%s", body)
			}
			if l := ts.log.LineWith("msg=access", "request_id="+id, "status="+fmt.Sprint(c.status)); !strings.Contains(l, c.cause) {
				t.Errorf("access log line for %s lacks the cause %q: %q\nlog:\n%s", id, c.cause, l, ts.log)
			}
		})
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return strings.TrimSpace(v)
}

func TestDemoFrontPageAndWorkingPrograms(t *testing.T) {
	ts, users := demoServer(t)
	resp, body := get(t, ts.URL+"/", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "bad-interpreter") {
		t.Fatalf("front page: %d\n%s", resp.StatusCode, body)
	}
	if os.Geteuid() != 0 && !strings.Contains(body, "every program") {
		t.Errorf("front page of an unprivileged demo does not say programs run as %s", SelfName())
	}
	resp, body = get(t, ts.URL+"/cgi-bin/hello", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Hello from suserve") {
		t.Fatalf("hello: %d\n%s", resp.StatusCode, body)
	}
	if len(users) == 0 {
		return
	}
	// As root: /login/ asks for credentials; with them, whoami runs as the user.
	if resp, _ := get(t, ts.URL+"/login/cgi-bin/whoami", nil); resp.StatusCode != 401 {
		t.Fatalf("whoami without login: %d, want 401", resp.StatusCode)
	}
	for _, u := range users {
		resp, body := get(t, ts.URL+"/login/cgi-bin/whoami", func(r *http.Request) { r.SetBasicAuth(u.Name, u.Password) })
		if resp.StatusCode != 200 || !strings.Contains(body, fmt.Sprintf("uid:      %d\n", u.UID)) {
			t.Errorf("whoami as %s: %d\n%s", u.Name, resp.StatusCode, body)
		}
	}
}

// idScript prints the identity the program runs as.
const idScript = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"uid=$(id -u) gid=$(id -g) groups=$(id -G) user=$USER remote=$REMOTE_USER\"\n"

func writeProgram(t *testing.T, path, text string, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

const identitiesTOML = `
[identities]
source = "static"

[[identities.static]]
name = "alice"
uid = 61001
gid = 61001
groups = [61010]
home = "{state}/home/alice"

[[identities.static]]
name = "bob"
uid = 61002
gid = 61002
home = "{state}/home/bob"

[[identities.static]]
name = "svc"
uid = 61003
gid = 61003

[[identities.static]]
name = "root"
uid = 0
gid = 0
`

func TestEachRunAsModeRunsTheExpectedIdentity(t *testing.T) {
	testutil.RequireRoot(t)
	state := t.TempDir()
	os.Chmod(state, 0o755)
	htpasswd := filepath.Join(state, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(
		// bcrypt of "alicepw" and "bobpw" at cost 4, and root with "rootpw".
		"alice:"+bcryptHash(t, "alicepw")+"\nbob:"+bcryptHash(t, "bobpw")+"\nroot:"+bcryptHash(t, "rootpw")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgText := strings.ReplaceAll(`
[auth]
mode = "basic"
htpasswd = "{state}/htpasswd"
`+strings.Replace(identitiesTOML, `[[identities.static]]
name = "root"
uid = 0
gid = 0
`, "", 1)+`
[[route]]
path = "/cgi-bin/"
dir = "{state}/cgi-bin"
run_as = "authenticated"

[[route]]
path = "/svc/"
dir = "{state}/svc"
run_as = "account"
account = "svc"

[[route]]
path = "/~{user}/cgi-bin/"
dir = "{home}/public_html/cgi-bin"
run_as = "owner"
`, "{state}", state)
	cfg, err := config.Parse([]byte(cfgText), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	writeProgram(t, filepath.Join(state, "cgi-bin", "id"), idScript, 0, 0)
	writeProgram(t, filepath.Join(state, "svc", "id"), idScript, 61003, 61003)
	for _, u := range []struct {
		name string
		uid  int
	}{{"alice", 61001}, {"bob", 61002}} {
		home := filepath.Join(state, "home", u.name)
		writeProgram(t, filepath.Join(home, "public_html", "cgi-bin", "id"), idScript, u.uid, u.uid)
		for _, d := range []string{home, filepath.Join(home, "public_html"), filepath.Join(home, "public_html", "cgi-bin")} {
			os.Chown(d, u.uid, u.uid)
		}
	}
	ts := startConfig(t, cfg, state, nil)

	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	cases := []struct {
		name   string
		path   string
		setup  func(*http.Request)
		status int
		want   string
	}{
		{"authenticated alice", "/cgi-bin/id", basic("alice", "alicepw"), 200, "uid=61001 gid=61001 groups=61001 61010 user=alice remote=alice"},
		{"authenticated bob", "/cgi-bin/id", basic("bob", "bobpw"), 200, "uid=61002 gid=61002 groups=61002 user=bob remote=bob"},
		{"no credentials", "/cgi-bin/id", nil, 401, ""},
		{"wrong password", "/cgi-bin/id", basic("alice", "nope"), 401, ""},
		{"root in htpasswd runs nothing", "/cgi-bin/id", basic("root", "rootpw"), 403, ""},
		{"account", "/svc/id", nil, 200, "uid=61003 gid=61003"},
		{"owner alice", "/~alice/cgi-bin/id", nil, 200, "uid=61001 gid=61001"},
		{"owner bob", "/~bob/cgi-bin/id", nil, 200, "uid=61002 gid=61002"},
		{"owner root", "/~root/cgi-bin/id", nil, 404, ""},
		{"owner unknown", "/~nobody-here/cgi-bin/id", nil, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := get(t, ts.URL+c.path, c.setup)
			if resp.StatusCode != c.status || !strings.Contains(body, c.want) {
				t.Fatalf("%s: %d %q, want %d %q\nlog:\n%s", c.path, resp.StatusCode, body, c.status, c.want, ts.log)
			}
		})
	}

	// Two users in parallel each see their own identity.
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 40 {
		u, p, want := "alice", "alicepw", "uid=61001"
		if i%2 == 1 {
			u, p, want = "bob", "bobpw", "uid=61002"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", ts.URL+"/cgi-bin/id", nil)
			req.SetBasicAuth(u, p)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), want) {
				errs <- fmt.Sprintf("%s saw %q", u, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// The Authorization header reached neither a program nor a log.
	if strings.Contains(ts.log.String(), "Basic ") || strings.Contains(ts.log.String(), "alicepw") {
		t.Errorf("credentials in the log:\n%s", ts.log)
	}
}

func TestRootIsNeverReached(t *testing.T) {
	// A route whose account is uid 0 fails the configuration check, naming the line.
	_, err := config.Parse([]byte(identitiesTOML+`
[[route]]
path = "/x/"
dir = "/srv/x"
run_as = "account"
account = "root"
`), "root.toml")
	if err == nil || !strings.Contains(err.Error(), "root.toml:") {
		t.Fatalf("a root identity in the static table passed the check: %v", err)
	}
	// Started as root, a route that runs as the server's own user is refused.
	if os.Geteuid() == 0 {
		cfg, err := config.Parse([]byte("[[route]]\npath = \"/cgi-bin/\"\ndir = \"/srv/cgi-bin\"\n"), "self.toml")
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckRunAs(cfg); err == nil || !strings.Contains(err.Error(), "never run as root") {
			t.Fatalf("a self route under root was not refused: %v", err)
		}
	}
}

func TestShutdownDrainsInFlightRequestsThenKillsThePrograms(t *testing.T) {
	ts, _ := demoServer(t)
	ts.Close() // use our own listener and Serve below
	ts.srv.cfg.Server.ShutdownTimeout = config.Duration(300 * time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ctx, ln, nil) }()
	url := "http://" + ln.Addr().String()

	// "slow" takes about 4 s; the drain waits 300 ms, then kills it.
	resp, err := http.Get(url + "/cgi-bin/slow")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the killed program's response ended cleanly; the client must see the truncation")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("shutdown took %v with a 300ms shutdown_timeout", d)
	}
	if _, err := http.Get(url + "/"); err == nil {
		t.Error("the server still accepts after shutdown")
	}
}

// TestNotRootRefusesRoutesForOtherUsers: suserve started as an ordinary user
// can only run programs as itself, so a route for other identities is
// refused at start, naming the route and its line.
func TestNotRootRefusesRoutesForOtherUsers(t *testing.T) {
	if !testutil.AsUnprivileged(t) {
		return
	}
	ids := strings.ReplaceAll(identitiesTOML[:strings.Index(identitiesTOML, "[[identities.static]]\nname = \"root\"")], "{state}", "/srv")
	cfg, err := config.Parse([]byte(ids+`
[[route]]
path = "/svc/"
dir = "/srv/svc"
run_as = "account"
account = "svc"
`), "other.toml")
	if err != nil {
		t.Fatal(err)
	}
	err = CheckRunAs(cfg)
	if err == nil || !strings.Contains(err.Error(), "route /svc/") || !strings.Contains(err.Error(), "needs suserve to start as root") {
		t.Fatalf("a route for another user was not refused: %v", err)
	}
	self, err := config.Parse([]byte("[[route]]\npath = \"/cgi-bin/\"\ndir = \"/srv/cgi-bin\"\n"), "self.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRunAs(self); err != nil {
		t.Fatalf("a self route was refused for an ordinary user: %v", err)
	}
}

// TestUnprivilegedDemoRunsEverythingAsItself: started as an ordinary user,
// the demo runs every program as that user and says so on its front page.
func TestUnprivilegedDemoRunsEverythingAsItself(t *testing.T) {
	if !testutil.AsUnprivileged(t) {
		return
	}
	ts, users := demoServer(t)
	if len(users) != 0 {
		t.Fatalf("an unprivileged demo has demo users: %v", users)
	}
	_, body := get(t, ts.URL+"/", nil)
	if !strings.Contains(body, "every program") || !strings.Contains(body, SelfName()) {
		t.Errorf("the front page does not say every program runs as %s:\n%s", SelfName(), body)
	}
	_, body = get(t, ts.URL+"/cgi-bin/whoami", nil)
	if want := fmt.Sprintf("uid:      %d\n", os.Getuid()); !strings.Contains(body, want) {
		t.Errorf("whoami does not run as the server's user (%q):\n%s", want, body)
	}
	_, body = get(t, ts.URL+"/cgi-bin/exit3", nil)
	if !strings.Contains(body, "status 3") {
		t.Errorf("diagnosis as an ordinary user:\n%s", body)
	}
}
