package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/testutil"
)

// userPools returns per-user pools of HTTP workers, closed (and checked to
// leave no worker behind) when the test ends.
func userPools(t *testing.T, idleStop time.Duration) (*UserPools, *httptest.Server) {
	l := &execLauncher{}
	u := &UserPools{New: func(id string) *Pool {
		return &Pool{Name: "/app/", Protocol: ProtocolHTTP, Command: []string{httpWorker}, Identity: id,
			Launcher: l, SocketDir: t.TempDir(), IdleStop: idleStop, Logger: testLogger(t)}
	}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := u.Close(ctx); err != nil {
			t.Error(err)
		}
		for _, pid := range l.pids() {
			if alive(pid) {
				t.Errorf("worker %d survived Close", pid)
			}
		}
	})
	return u, serve(t, &Handler{Pools: u, Prefix: "/app/"}, "")
}

func pidOf(t *testing.T, srv *httptest.Server, user string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/app/pid", nil)
	req.Header.Set("X-Test-User", user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pid int
	if _, err := fmtSscan(resp, &pid); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v", user, resp.StatusCode, err)
	}
	return pid
}

func TestPerUserPoolsRunEachUserInTheirOwnWorkers(t *testing.T) {
	u, srv := userPools(t, 0)
	alice, bob := pidOf(t, srv, "alice"), pidOf(t, srv, "bob")
	if alice == bob {
		t.Fatalf("alice and bob share worker %d", alice)
	}
	if again := pidOf(t, srv, "alice"); again != alice {
		t.Fatalf("alice's second request went to %d, not her worker %d", again, alice)
	}
	for _, id := range []string{"alice", "bob"} {
		p, _ := u.Pool(id)
		if p.Identity != id {
			t.Fatalf("pool of %s runs as %q", id, p.Identity)
		}
	}
	if got := u.Stats(); len(got) != 2 || got[0].Identity != "alice" || got[1].Identity != "bob" {
		t.Fatalf("pools %+v", got)
	}
}

func TestIdlePerUserPoolsRetire(t *testing.T) {
	u, srv := userPools(t, 100*time.Millisecond)
	alice, bob := pidOf(t, srv, "alice"), pidOf(t, srv, "bob")
	// Idle pools retire: their workers exit and the users leave the map.
	waitExit(t, alice)
	waitExit(t, bob)
	waitFor(t, func() bool { return len(u.Stats()) == 0 })
	// A retired user's next request gets a new pool and a new worker.
	if again := pidOf(t, srv, "alice"); again == alice {
		t.Fatalf("alice's retired worker %d answered", alice)
	}
}

func TestPerUserWorkersRunAsTheirUsers(t *testing.T) {
	testutil.RequireRoot(t)
	l := &execLauncher{uids: map[string]uint32{"alice": testutil.AliceUID, "bob": testutil.BobUID}}
	u := &UserPools{New: func(id string) *Pool {
		return &Pool{Name: "/app/", Protocol: ProtocolHTTP, Command: []string{httpWorker}, Identity: id,
			Dir: "/", Launcher: l, SocketDir: t.TempDir(), Logger: testLogger(t)}
	}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := u.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	srv := serve(t, &Handler{Pools: u, Prefix: "/app/"}, "")
	uidOf := func(user string) (uid, pid int) {
		req, _ := http.NewRequest("GET", srv.URL+"/app/uid", nil)
		req.Header.Set("X-Test-User", user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := fmtSscan(resp, &uid, &pid); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", user, resp.StatusCode, err)
		}
		return uid, pid
	}
	aUID, aPid := uidOf("alice")
	bUID, bPid := uidOf("bob")
	if aUID != testutil.AliceUID || bUID != testutil.BobUID || aPid == bPid {
		t.Fatalf("alice ran as uid %d (pid %d), bob as uid %d (pid %d)", aUID, aPid, bUID, bPid)
	}
}
