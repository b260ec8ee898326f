package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestKilledWorkerIsRestartedAndTheNextRequestSucceeds(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, _ := newPool(t, protocol, bin)
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
		pid := getPid(t, srv.URL+"/app/pid")
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, pid)
		next := getPid(t, srv.URL+"/app/pid")
		if next == pid {
			t.Fatalf("the killed worker %d answered", pid)
		}
		s := p.Stats()
		if s.Started != 2 || s.LastFailure == nil || s.LastFailure.Signal != "killed" {
			t.Fatalf("stats %+v, last failure %v", s, s.LastFailure)
		}
	})
}

func TestWorkerThatExitsAtOnceGets503WithCauseDuringBackoff(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, l := newPool(t, protocol, bin, func(p *Pool) {
			p.Env = []string{"WORKER_MODE=exit"}
			p.BackoffMin = time.Minute
		})
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Diagnostics: true}, "")
		for i := range 3 {
			code, body, hdr := get(t, srv.URL+"/app/hello")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "cause: crash loop") ||
				!strings.Contains(body, "exited with status") || hdr.Get("Retry-After") == "" {
				t.Fatalf("request %d: %d %q", i, code, body)
			}
			if !strings.Contains(body, "cannot open the database") && !strings.Contains(body, "missing configuration file") {
				t.Fatalf("request %d: the worker's stderr is not on the page: %q", i, body)
			}
		}
		// One immediate restart, then restarts are held back.
		if n := len(l.pids()); n != 2 {
			t.Fatalf("%d workers started, want 2", n)
		}
		s := p.Stats()
		var f *Failure
		if !errors.As(s.LastFailure, &f) || f.Cause != WorkerExited || f.Exit == 0 || s.BackoffLeft <= 0 {
			t.Fatalf("stats %+v, last failure %#v", s, s.LastFailure)
		}
	})
}

func TestWorkerThatNeverAnswersFailsAfterStartTimeout(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, fcgiWorker, func(p *Pool) {
		p.Env = []string{"WORKER_MODE=noaccept"}
		p.StartTimeout = 200 * time.Millisecond
		p.BackoffMin = time.Minute
	})
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Diagnostics: true}, "")
	code, body, _ := get(t, srv.URL+"/app/hello")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, string(NeverReady)) || !strings.Contains(body, "warming up forever") {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestLauncherFailureIsReported(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, "/nonexistent/worker", func(p *Pool) { p.BackoffMin = time.Minute })
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Diagnostics: true}, "")
	code, body, _ := get(t, srv.URL+"/app/hello")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, string(StartFailed)) || !strings.Contains(body, "no such file") {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestWorkerDyingMidRequestIsA502ThatSaysHow(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, fcgiWorker)
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/", Diagnostics: true}, "")
	code, body, _ := get(t, srv.URL+"/app/die")
	if code != http.StatusBadGateway || !strings.Contains(body, "cause: worker exited") || !strings.Contains(body, "status 7") || !strings.Contains(body, "dying on request") {
		t.Fatalf("got %d %q", code, body)
	}
	if code, _, _ := get(t, srv.URL+"/app/hello"); code != 200 {
		t.Fatalf("after the death: %d", code)
	}
}

func TestIdleWorkersAreStoppedAndStartAgainOnDemand(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		idled := make(chan struct{}, 1)
		p, _ := newPool(t, protocol, bin, func(p *Pool) {
			p.IdleStop = 100 * time.Millisecond
			p.OnIdle = func() { idled <- struct{}{} }
		})
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
		pid := getPid(t, srv.URL+"/app/pid")
		<-idled
		waitExit(t, pid)
		// A stop is not a failure: no backoff, no cause.
		if s := p.Stats(); s.Failures != 0 || s.LastFailure != nil {
			t.Fatalf("stats after idle stop: %+v", s)
		}
		if next := getPid(t, srv.URL+"/app/pid"); next == pid {
			t.Fatalf("pid %d answered after its idle stop", pid)
		}
	})
}

func TestCloseLeavesNoWorkerBehind(t *testing.T) {
	for _, mode := range []string{"", "ignoreterm"} {
		t.Run("mode="+mode, func(t *testing.T) {
			l := &execLauncher{}
			p := &Pool{Name: "/app/", Protocol: ProtocolFastCGI, Command: []string{fcgiWorker}, Launcher: l,
				SocketDir: t.TempDir(), Workers: 3, Grace: 200 * time.Millisecond, Env: []string{"WORKER_MODE=" + mode}, Logger: testLogger(t)}
			srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
			if code, _, _ := get(t, srv.URL+"/app/hello"); code != 200 {
				t.Fatal(code)
			}
			pids := l.pids()
			if len(pids) != 3 {
				t.Fatalf("%d workers, want 3", len(pids))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.Close(ctx); err != nil {
				t.Fatal(err)
			}
			for _, pid := range pids {
				if alive(pid) {
					t.Errorf("worker %d survived Close", pid)
				}
			}
			code, body, _ := get(t, srv.URL+"/app/hello")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, string(PoolStopped)) {
				t.Fatalf("after Close: %d %q", code, body)
			}
		})
	}
}

func TestRequestsQueueWhenWorkersAreBusyAndOverflowIs503(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, fcgiWorker, func(p *Pool) { p.Workers, p.MaxQueue = 1, 1 })
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")

	if code, _, _ := get(t, srv.URL+"/app/hello"); code != 200 {
		t.Fatal(code) // the worker is up
	}
	// A holds the only worker until its body ends.
	pr, pw := io.Pipe()
	aDone := make(chan string, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/app/block", "text/plain", pr)
		if err != nil {
			aDone <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		aDone <- string(b)
	}()
	pw.Write([]byte("x"))
	waitFor(t, func() bool { return p.Stats().InFlight == 1 })
	// B waits in the queue.
	bDone := make(chan string, 1)
	go func() {
		_, body, _ := get(t, srv.URL+"/app/hello")
		bDone <- body
	}()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	// C finds the queue full.
	code, body, hdr := get(t, srv.URL+"/app/hello")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, string(QueueFull)) || hdr.Get("Retry-After") == "" {
		t.Fatalf("C: %d %q", code, body)
	}
	pw.Close()
	if a := <-aDone; a != "unblocked" {
		t.Fatalf("A: %q", a)
	}
	if b := <-bDone; !strings.HasPrefix(b, "hello from") {
		t.Fatalf("B: %q", b)
	}
}

// TestNoQueueStillLetsAColdPoolServe: with no queue (max_queue = 0), the
// requests that reach a pool whose workers are still starting wait for
// them, up to their free slots; only the ones beyond those are refused.
func TestNoQueueStillLetsAColdPoolServe(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, fcgiWorker, func(p *Pool) { p.Workers, p.MaxQueue = 2, -1 })
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/app/hello")
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("a request to a cold pool without a queue got %d, want 200", code)
		}
	}
}

// waitFor waits for a state the pool reports only through Stats (a request
// entering the queue has no event of its own).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBackoffDoublesUpToItsLimit(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 0}, {2, time.Second}, {3, 2 * time.Second}, {4, 4 * time.Second}, {10, 60 * time.Second}, {100, 60 * time.Second}} {
		if got := backoff(tc.n, time.Second, time.Minute); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestRestartsResumeWhenTheBackoffEnds(t *testing.T) {
	p, l := newPool(t, ProtocolFastCGI, fcgiWorker, func(p *Pool) {
		p.Env = []string{"WORKER_MODE=exit"}
		p.BackoffMin = 500 * time.Millisecond
	})
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
	if code, _, _ := get(t, srv.URL+"/app/hello"); code != http.StatusServiceUnavailable {
		t.Fatal(code)
	}
	if n := len(l.pids()); n != 2 {
		t.Fatalf("%d starts, want 2", n)
	}
	// Held back: no start until the backoff ends.
	if code, _, _ := get(t, srv.URL+"/app/hello"); code != http.StatusServiceUnavailable || len(l.pids()) != 2 {
		t.Fatalf("during backoff: %d, %d starts", code, len(l.pids()))
	}
	waitFor(t, func() bool { return p.Stats().BackoffLeft == 0 })
	if code, _, _ := get(t, srv.URL+"/app/hello"); code != http.StatusServiceUnavailable {
		t.Fatal(code)
	}
	s := p.Stats()
	if len(l.pids()) != 3 || s.Failures != 3 || s.BackoffLeft <= 500*time.Millisecond {
		t.Fatalf("after the backoff: %d starts, stats %+v", len(l.pids()), s)
	}
}

func TestQueueTimeoutIs503(t *testing.T) {
	p, _ := newPool(t, ProtocolFastCGI, fcgiWorker, func(p *Pool) { p.QueueTimeout = 100 * time.Millisecond })
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
	if code, _, _ := get(t, srv.URL+"/app/hello"); code != 200 {
		t.Fatal(code)
	}
	pr, pw := io.Pipe()
	aDone := make(chan error, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/app/block", "text/plain", pr)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		aDone <- err
	}()
	pw.Write([]byte("x"))
	waitFor(t, func() bool { return p.Stats().InFlight == 1 })
	code, body, _ := get(t, srv.URL+"/app/hello")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, string(QueueTimeout)) {
		t.Fatalf("got %d %q", code, body)
	}
	pw.Close()
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
}

func TestClientDisconnectAbortsTheRequestAndFreesTheWorker(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, _ := newPool(t, protocol, bin)
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
		pid := getPid(t, srv.URL+"/app/pid")
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/app/big?n=10000000000", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		cancel()
		resp.Body.Close()
		waitFor(t, func() bool { return p.Stats().InFlight == 0 })
		// The same worker serves on: an abort is not a crash.
		if next := getPid(t, srv.URL+"/app/pid"); next != pid {
			t.Fatalf("worker %d replaced by %d after a client disconnect", pid, next)
		}
		if s := p.Stats(); s.Started != 1 || s.LastFailure != nil {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestLightLoadStaysOnTheFirstWorkerAndSpreadsWhenItIsBusy: one request at
// a time goes to the same worker every time; a request that arrives while
// that worker is busy goes to another.
func TestLightLoadStaysOnTheFirstWorkerAndSpreadsWhenItIsBusy(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, _ := newPool(t, protocol, bin, func(p *Pool) { p.Workers = 3 })
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
		getPid(t, srv.URL+"/app/pid") // starts the workers
		waitFor(t, func() bool { return p.Stats().Ready == 3 })
		first := getPid(t, srv.URL+"/app/pid")
		for range 10 {
			// The handler gives its worker back after the client has the
			// response: the next request is sequential once it has.
			waitFor(t, func() bool { return p.Stats().InFlight == 0 })
			if pid := getPid(t, srv.URL+"/app/pid"); pid != first {
				t.Fatalf("sequential requests went to workers %d and %d", first, pid)
			}
		}
		// A request whose body is still coming holds the first worker.
		pr, pw := io.Pipe()
		held := make(chan error, 1)
		go func() {
			resp, err := http.Post(srv.URL+"/app/echo", "text/plain", pr)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			held <- err
		}()
		pw.Write([]byte("x"))
		waitFor(t, func() bool { return p.Stats().InFlight == 1 })
		if pid := getPid(t, srv.URL+"/app/pid"); pid == first {
			t.Errorf("a request went to the busy worker %d while two were idle", pid)
		}
		pw.Close()
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	})
}
