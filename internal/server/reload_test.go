package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/testutil"
)

// reloadable serves the first of cfgs through ServeReloading; next builds
// the server of a later one with the same launcher, as a SIGHUP does.
type reloadable struct {
	first  *Server
	url    string
	reload chan *Server
	next   func(text string) *Server
	log    *testutil.LogBuffer
	done   chan error
}

func serveReloadable(t *testing.T, state, text string) *reloadable {
	t.Helper()
	ls := newLocalServer(t, state, text)
	srv, ln := ls.srv, ls.ln
	r := &reloadable{first: srv, url: "http://" + ln.Addr().String(), reload: make(chan *Server), next: ls.build, log: ls.logs, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- ServeReloading(ctx, ln, nil, srv, r.reload) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("ServeReloading: %v", err)
		}
	})
	return r
}

// fetch is a GET's status and body, or the error as the body.
func fetch(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// holdWorker starts a request that holds its worker until the returned
// body is closed; its outcome arrives on the channel.
func holdWorker(url string) (*io.PipeWriter, chan string) {
	pr, pw := io.Pipe()
	out := make(chan string, 1)
	go func() {
		resp, err := http.Post(url, "text/plain", pr)
		if err != nil {
			out <- err.Error()
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			out <- fmt.Sprintf("%d %s (%v)", resp.StatusCode, b, err)
			return
		}
		out <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	pw.Write([]byte("x"))
	return pw, out
}

// TestReloadTakesOverNewRequestsWhileTheOldConfigurationDrains: after a
// reload, new requests follow the new configuration at once, a request in
// flight finishes on the old one, and the old one's app workers are then
// stopped.
func TestReloadTakesOverNewRequestsWhileTheOldConfigurationDrains(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	r := serveReloadable(t, appState(t), appConfig(bin, "/app/", ""))
	code, body := fetch(r.url + "/app/hello")
	if code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Fatalf("before the reload: %d %q", code, body)
	}
	oldPid, _ := strconv.Atoi(strings.TrimPrefix(body, "hello from "))
	body1, held := holdWorker(r.url + "/app/block")
	waitInFlight(t, r.first, 1, held)

	r.reload <- r.next(appConfig(bin, "/other/", ""))
	if code, body := fetch(r.url + "/app/hello"); code != http.StatusNotFound {
		t.Errorf("the removed app after the reload: %d %q, want 404", code, body)
	}
	if code, body := fetch(r.url + "/other/x"); code != 200 || !strings.HasPrefix(body, "hello from ") {
		t.Errorf("the new app after the reload: %d %q", code, body)
	}
	// The old worker still serves the request it holds.
	if err := testutil.WaitPidExit(oldPid, 100*time.Millisecond); err == nil {
		t.Fatal("the old configuration's worker stopped while a request held it")
	}
	body1.Close()
	if got := <-held; got != "200 unblocked" {
		t.Errorf("the request in flight across the reload: %q", got)
	}
	if err := testutil.WaitPidExit(oldPid, 15*time.Second); err != nil {
		t.Errorf("the old configuration's worker after its drain: %v", err)
	}
	waitLogged(t, r.log, "the previous configuration is retired")
}

// TestReloadCancelsWhatOutlivesTheOldShutdownTimeout: a request of the old
// configuration that runs past its shutdown_timeout is cancelled, and its
// worker stopped, as at shutdown.
func TestReloadCancelsWhatOutlivesTheOldShutdownTimeout(t *testing.T) {
	testutil.RequireRoot(t)
	bin := fcgiWorkerBin(t)
	r := serveReloadable(t, appState(t), appConfig(bin, "/app/", ""))
	code, body := fetch(r.url + "/app/hello")
	if code != 200 {
		t.Fatalf("before the reload: %d %q", code, body)
	}
	oldPid, _ := strconv.Atoi(strings.TrimPrefix(body, "hello from "))
	body1, held := holdWorker(r.url + "/app/block")
	defer func() { body1.Close(); <-held }()
	waitInFlight(t, r.first, 1, held)

	r.reload <- r.next(appConfig(bin, "/app/", ""))
	// The request ends, aborted (its client, still sending, sees the
	// connection close once it stops writing).
	waitLogged(t, r.log, "path=/app/block status=0")
	if err := testutil.WaitPidExit(oldPid, 15*time.Second); err != nil {
		t.Errorf("the old worker: %v", err)
	}
	waitLogged(t, r.log, "outlived shutdown_timeout")
	// The new configuration serves the same path with a worker of its own.
	if code, body := fetch(r.url + "/app/hello"); code != 200 || body == fmt.Sprintf("hello from %d", oldPid) {
		t.Errorf("after the reload: %d %q", code, body)
	}
}

// waitLogged waits until the log has a line containing s.
func waitLogged(t *testing.T, log *testutil.LogBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log has no %q after 15s:\n%s", s, log.String())
		}
		time.Sleep(5 * time.Millisecond) // the log has no event to wait on
	}
}

// waitInFlight waits until s's app workers hold n requests; a request
// that ends first (on one of ended) fails the test.
func waitInFlight(t *testing.T, s *Server, n int, ended ...chan string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := 0
		for _, st := range s.appStatuses() {
			got += st.Stats.InFlight
		}
		if got == n {
			return
		}
		for _, e := range ended {
			select {
			case d := <-e:
				t.Fatalf("a request ended while it should hold a worker: %s", d)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight after 10s, want %d", got, n)
		}
		time.Sleep(2 * time.Millisecond) // in flight is a count, with no event of its own
	}
}
