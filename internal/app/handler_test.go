package app

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestWorkersServeThroughTheHandler(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, l := newPool(t, protocol, bin, func(p *Pool) { p.Workers = 2 })
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Dir: "/srv/app"}, "")
		if n := len(l.pids()); n != 0 {
			t.Fatalf("%d workers started before the first request", n)
		}
		code, body, _ := get(t, srv.URL+"/app/hello")
		if code != 200 || !strings.HasPrefix(body, "hello from ") {
			t.Fatalf("got %d %q", code, body)
		}
		if n := len(l.pids()); n != 2 {
			t.Fatalf("%d workers started, want 2", n)
		}
		if s := p.Stats(); s.Ready != 2 && s.Ready != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestFastCGIParamsFollowNginx(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, fcgiWorker)
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Dir: "/srv/app"}, "alice")
	req, _ := http.NewRequest("GET", srv.URL+"/app/env?x=1", nil)
	req.SetBasicAuth("alice", "secret")
	req.Header.Set("X-Custom", "yes")
	req.Header.Set("X_Forged", "no")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{
		"DOCUMENT_ROOT=/srv/app\n",
		"SCRIPT_FILENAME=/srv/app/env\n",
		"REDIRECT_STATUS=200\n",
		"QUERY=x=1\n",
		"X_CUSTOM=yes\n",
		"REMOTE_USER=alice\n",
		"AUTHORIZATION=\n", // the password never reaches the worker
		"FORGED=\n",        // X_Forged would collide with X-Forged
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in\n%s", want, body)
		}
	}
}

func TestScriptPathsMapLikeNginx(t *testing.T) {
	h := &Handler{Prefix: "/wiki/", Dir: "/srv/wiki", Index: "index.php", SplitPath: ".php"}
	for _, tc := range []struct {
		path                 string
		name, file, pathInfo string
		ok                   bool
	}{
		{"/wiki/", "/wiki/index.php", "/srv/wiki/index.php", "", true},
		{"/wiki/a/b.php", "/wiki/a/b.php", "/srv/wiki/a/b.php", "", true},
		{"/wiki/b.php/extra/x", "/wiki/b.php", "/srv/wiki/b.php", "/extra/x", true},
		{"/wiki/dir/", "/wiki/dir/index.php", "/srv/wiki/dir/index.php", "", true},
		{"/wiki/../etc/passwd", "", "", "", false},
		{"/wiki/a\x00.php", "", "", "", false},
	} {
		sc, ok := h.script(tc.path)
		if ok != tc.ok || sc.name != tc.name || sc.file != tc.file || sc.pathInfo != tc.pathInfo {
			t.Errorf("script(%q) = %+v, %v; want %q %q %q %v", tc.path, sc, ok, tc.name, tc.file, tc.pathInfo, tc.ok)
		}
	}
}

func TestHTTPWorkerSeesTheUserButNotThePassword(t *testing.T) {
	p, _ := newPool(t, ProtocolHTTP, httpWorker)
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "alice")
	req, _ := http.NewRequest("GET", srv.URL+"/app/headers", nil)
	req.SetBasicAuth("alice", "secret")
	req.Header.Set(RemoteUserHeader, "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if !strings.Contains(body, "X-Remote-User: alice") || strings.Contains(body, "mallory") || strings.Contains(body, "Authorization") {
		t.Fatalf("headers the worker saw:\n%s", body)
	}
}

func TestMalformedResponseIsA502WithCause(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		testMalformedResponse(t, protocol, bin)
	})
}

func testMalformedResponse(t *testing.T, protocol, bin string) {
	mode, quoted := "malformed", `Content-Type text/plain`
	if protocol == ProtocolHTTP {
		mode, quoted = "badhttp", `This is not a header`
	}
	p, _ := newPool(t, protocol, bin, func(p *Pool) { p.Env = []string{"WORKER_MODE=" + mode} })
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Diagnostics: true}, "")
	code, body, _ := get(t, srv.URL+"/app/x")
	if code != http.StatusBadGateway || !strings.Contains(body, "cause: malformed response") || !strings.Contains(body, quoted) {
		t.Fatalf("got %d %q", code, body)
	}
	// The worker's output was bad, not the worker: it stays up.
	if s := p.Stats(); s.Failures != 0 || len(s.Pids) != 1 {
		t.Fatalf("stats after a malformed response: %+v", s)
	}
}

func TestNoAuthenticatedUserIs401ForPerUserApps(t *testing.T) {
	u := &UserPools{New: func(id string) *Pool { t.Fatal("no pool should be made"); return nil }}
	srv := serve(t, &Handler{Pools: u, Prefix: "/app/"}, "")
	code, body, _ := get(t, srv.URL+"/app/x")
	if code != http.StatusUnauthorized || !strings.Contains(body, string(NoUser)) {
		t.Fatalf("got %d %q", code, body)
	}
	_, err := u.PoolFor(&http.Request{})
	var f *Failure
	if !errors.As(err, &f) || f.Cause != NoUser {
		t.Fatalf("PoolFor without a user: %v", err)
	}
}

func TestAFailureAnswersALargePostWithItsPage(t *testing.T) {
	// The handler switches to full duplex before it knows it will fail,
	// and then leaves the body unread.
	u := &UserPools{New: func(id string) *Pool { t.Fatal("no pool should be made"); return nil }}
	srv := serve(t, &Handler{Pools: u, Prefix: "/app/"}, "")
	for i := range 10 {
		resp, err := http.Post(srv.URL+"/app/x", "text/plain", strings.NewReader(strings.Repeat("x", 100000)))
		if err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), string(NoUser)) {
			t.Fatalf("try %d: %d %q %v", i, resp.StatusCode, b, err)
		}
	}
}

func TestADeclaredBodyOverTheLimitStartsNoWorker(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, _ := newPool(t, protocol, bin)
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/", MaxRequestBody: 1000, Diagnostics: true}, "")
		resp, err := http.Post(srv.URL+"/app/echo", "text/plain", strings.NewReader(strings.Repeat("x", 1001)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "Content-Length 1001 is over the limit of 1000 bytes") {
			t.Fatalf("%d %q", resp.StatusCode, b)
		}
		if s := p.Stats(); s.Started != 0 {
			t.Fatalf("a worker was started for a body refused by its Content-Length: %+v", s)
		}
	})
}

func TestRequestBodyOverTheLimitIs413(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, _ := newPool(t, protocol, bin)
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/", MaxRequestBody: 1000}, "")
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(strings.Repeat("x", 100000))
			if chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			resp, err := http.Post(srv.URL+"/app/echo", "text/plain", body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("chunked=%v: %d %q", chunked, resp.StatusCode, b)
			}
		}
		// The worker was not to blame.
		if s := p.Stats(); s.Started != 1 || s.LastFailure != nil {
			t.Fatalf("stats %+v", s)
		}
	})
}
