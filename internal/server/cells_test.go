package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/testutil"
)

// cellServer serves {state}/cgi-bin as account routes for alice, bob and
// carol, each in its own cell, with the given [cells] table.
func cellServer(t *testing.T, cells string, programs map[string]string) *testServer {
	t.Helper()
	testutil.RequireRoot(t)
	state := t.TempDir()
	// The programs open files by path as their identities.
	os.Chmod(filepath.Dir(state), 0o755)
	os.Chmod(state, 0o755)
	// Account routes run programs owned by their account, one directory each.
	var routes strings.Builder
	for i, u := range []string{"alice", "bob", "carol"} {
		fmt.Fprintf(&routes, "[[route]]\npath = \"/%s/\"\ndir = \"{state}/%s\"\nrun_as = \"account\"\naccount = %q\n\n", u, u, u)
		for name, text := range programs {
			writeProgram(t, filepath.Join(state, u, name), text, 61001+i, 61001+i)
		}
	}
	cfgText := strings.ReplaceAll(`
[identities]
source = "static"

[[identities.static]]
name = "alice"
uid = 61001
gid = 61001

[[identities.static]]
name = "bob"
uid = 61002
gid = 61002

[[identities.static]]
name = "carol"
uid = 61003
gid = 61003

[cells]
backend = "auto"
`+cells+"\n"+routes.String(), "{state}", state)
	cfg, err := config.Parse([]byte(cfgText), "cells.toml")
	if err != nil {
		t.Fatal(err)
	}
	ts := startConfig(t, cfg, state, nil)
	if ts.srv.opts.Cells == nil {
		t.Fatalf("no cells on this host as root: %v", ts.srv.opts.Notes)
	}
	return ts
}

const (
	helloCGI = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello\\n'\n"
	// Allocates far past the cell's memory: tail keeps a line without a
	// newline in memory until it ends.
	hogCGI = "#!/bin/sh\nset -e\nhead -c 400M /dev/zero | tail >/dev/null\nprintf 'Content-Type: text/plain\\r\\n\\r\\nsurvived\\n'\n"
	// Forks until the pids limit refuses, then fails.
	forkBombCGI = "#!/bin/sh\ni=0\nwhile [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done\nwait\n"
	cgroupCGI   = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\ncat /proc/self/cgroup\n"
)

func TestCellLimitsAreDiagnosedAndConfinedToTheirIdentity(t *testing.T) {
	ts := cellServer(t, `budget = "256MiB"
cell_memory = "64MiB"
cell_pids = 16`, map[string]string{"hog": hogCGI, "forkbomb": forkBombCGI, "hello": helloCGI, "cgroup": cgroupCGI})

	// Two identities report different cells; a second request reuses its cell.
	_, a1 := get(t, ts.URL+"/alice/cgroup", nil)
	_, a2 := get(t, ts.URL+"/alice/cgroup", nil)
	_, b1 := get(t, ts.URL+"/bob/cgroup", nil)
	cellOf := func(s string) string {
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, ":pids:") {
				return filepath.Dir(l[strings.LastIndex(l, ":")+1:])
			}
		}
		return ""
	}
	if cellOf(a1) == "" || cellOf(a1) != cellOf(a2) || cellOf(a1) == cellOf(b1) {
		t.Fatalf("cells: alice %q then %q, bob %q", cellOf(a1), cellOf(a2), cellOf(b1))
	}
	if st := ts.srv.opts.Cells.Stats(); st.Created != 2 {
		t.Errorf("cells created for 3 requests of 2 identities: %d, want 2", st.Created)
	}

	// While alice's programs hit their limits, bob's requests keep working.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bobFailures []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Get(ts.URL + "/bob/hello")
			if err != nil {
				bobFailures = append(bobFailures, err.Error())
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "hello\n" {
				bobFailures = append(bobFailures, fmt.Sprintf("%d %q", resp.StatusCode, b))
			}
		}
	}()

	resp, body := get(t, ts.URL+"/alice/hog", nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "oom") && !strings.Contains(body, "OOM") {
		t.Errorf("memory hog: %d\n%s", resp.StatusCode, body)
	}
	id := between(body, "request id: ", "\n")
	if l := ts.log.LineWith("cgi failure", "request_id="+id); !strings.Contains(l, "OOM") || !strings.Contains(l, "64MiB") {
		t.Errorf("log line of the OOM kill does not say so with the limit: %q", l)
	}

	resp, body = get(t, ts.URL+"/alice/forkbomb", nil)
	if resp.StatusCode != 502 || !strings.Contains(body, "pids") {
		t.Errorf("fork bomb: %d\n%s", resp.StatusCode, body)
	}
	id = between(body, "request id: ", "\n")
	if l := ts.log.LineWith("cgi failure", "request_id="+id); !strings.Contains(l, "pids limit 16") {
		t.Errorf("log line of the fork bomb does not name the pids limit: %q", l)
	}
	close(stop)
	wg.Wait()
	if len(bobFailures) > 0 {
		t.Errorf("bob's requests failed while alice hit her limits: %v", bobFailures)
	}
}

func TestFullBudgetAnswers503WithRetryAfterAndTheNumbers(t *testing.T) {
	ts := cellServer(t, `budget = "128MiB"
cell_memory = "64MiB"
queue_timeout = "200ms"`, map[string]string{"hello": helloCGI, "hold": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nholding\\n'\ncat \"$(dirname \"$SCRIPT_FILENAME\")/fifo\"\n"})

	// alice and bob hold both cells with programs blocked on a fifo.
	var wg sync.WaitGroup
	var fifos []string
	for i, u := range []string{"alice", "bob"} {
		fifo := filepath.Join(ts.state, u, "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chown(fifo, 61001+i, 61001+i)
		fifos = append(fifos, fifo)
		resp, err := http.Get(ts.URL + "/" + u + "/hold")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, resp.Body); resp.Body.Close() }()
	}
	resp, body := get(t, ts.URL+"/carol/hello", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third identity with the budget full: %d, Retry-After %q\n%s\nlog:\n%s", resp.StatusCode, resp.Header.Get("Retry-After"), body, ts.log)
	}
	if !strings.Contains(body, "cell budget full") {
		t.Errorf("the 503 page does not name the cause:\n%s", body)
	}
	id := between(body, "request id: ", "\n")
	if l := ts.log.LineWith("cgi failure", "request_id="+id); !strings.Contains(l, "2 of 2 cells busy") || !strings.Contains(l, "budget 128MiB / cell_memory 64MiB") {
		t.Errorf("the log line of the refusal does not name the numbers: %q", l)
	}
	for _, fifo := range fifos {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Close() // the holder's cat sees end of file and exits
	}
	wg.Wait()
	// Once a cell is idle, carol's request evicts it and runs.
	resp, body = get(t, ts.URL+"/carol/hello", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("after the cells were freed: %d\n%s", resp.StatusCode, body)
	}
}

// TestDisconnectKillsADetachedGrandchildThroughItsCell: a program that
// forks a grandchild into a session of its own (out of reach of a
// process-group kill) and then stalls leaves nothing behind when its client
// goes away: the cell's request group is killed whole. (Time-outs end a
// request through the same kill.)
func TestDisconnectKillsADetachedGrandchildThroughItsCell(t *testing.T) {
	const detach = "#!/bin/sh\n" +
		"setsid sh -c 'echo $$ > \"$0\"; exec sleep 300' \"$(dirname \"$SCRIPT_FILENAME\")/grandchild.pid\" &\n" +
		"sleep 300\n"
	ts := cellServer(t, `budget = "256MiB"
cell_memory = "64MiB"`, map[string]string{"detach": detach})
	pidFile := filepath.Join(ts.state, "alice", "grandchild.pid")
	os.WriteFile(pidFile, nil, 0o666)
	os.Chown(pidFile, 61001, 61001)

	done := make(chan *http.Response, 1)
	req, _ := http.NewRequest("GET", ts.URL+"/alice/detach", nil)
	ctx, cancel := context.WithCancel(context.Background())
	req = req.WithContext(ctx)
	go func() {
		resp, _ := http.DefaultClient.Do(req)
		done <- resp
	}()
	// Wait for the grandchild to say who it is, and hold a pidfd on it.
	var pidfd int
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, _ := os.ReadFile(pidFile)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
				t.Fatalf("grandchild %d: %v", pid, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the grandchild never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer unix.Close(pidfd)
	// The client goes away: the request's whole tree must go with it.
	cancel()
	<-done
	if err := testutil.WaitExit(pidfd, 5*time.Second); err != nil {
		t.Fatalf("the detached grandchild outlived its request: %v", err)
	}
}
