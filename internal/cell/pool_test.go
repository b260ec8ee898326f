package cell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const mib = 1 << 20

// autoBackend is the backend "auto" picks on this host (cgroup1 on a
// hybrid host), the one suserve runs with here.
func autoBackend(t *testing.T) Backend {
	t.Helper()
	bs := realBackends(t)
	if b := bs[Cgroup1]; b != nil {
		return b
	}
	return bs[Cgroup2]
}

// openPool opens a pool in a fresh subtree; t.Cleanup closes it and checks
// that no directory of it is left.
func openPool(t *testing.T, b Backend, cfg Config) *Pool {
	t.Helper()
	testSeq++
	if cfg.Root == "" {
		cfg.Root = fmt.Sprintf("suserve-test-%d-%d", os.Getpid(), testSeq)
	}
	if cfg.LockDir == "" {
		cfg.LockDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.QueueTimeout == 0 {
		cfg.QueueTimeout = 5 * time.Second
	}
	p, err := Open(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if kids, _ := b.Children(cfg.Root); len(kids) > 0 {
			t.Errorf("left behind: %v", kids)
			destroyTree(t, b, cfg.Root)
		}
	})
	return p
}

func acquire(t *testing.T, p *Pool, id string) *Lease {
	t.Helper()
	l, err := p.Acquire(context.Background(), id)
	if err != nil {
		t.Fatalf("acquire %s: %v", id, err)
	}
	t.Cleanup(l.Release)
	return l
}

// run runs argv in the lease's request group and returns its stdout and
// how it ended.
func run(t *testing.T, l *Lease, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if _, err := l.Spawn(func(attr *syscall.SysProcAttr) (int, error) {
		cmd.SysProcAttr = attr
		return 0, cmd.Start()
	}); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	return out.String(), err
}

// groupOf is where a program that printed its /proc/self/cgroup ran, as
// the backend sees it.
func groupOf(backend, procCgroup string) string {
	pc := parseProcCgroup([]byte(procCgroup))
	if backend == Cgroup1 {
		return pc.V1["memory"]
	}
	return pc.V2
}

func TestIdentitiesRunInOwnCellsAndReuseThem(t *testing.T) {
	for name, b := range realBackends(t) {
		t.Run(name, func(t *testing.T) {
			p := openPool(t, b, Config{Budget: 1024 * mib, CellMemory: 256 * mib, CellPids: 64})
			where := map[string]string{}
			for _, id := range []string{"alice", "bob", "alice", "alice"} {
				l := acquire(t, p, id)
				out, err := run(t, l, "/bin/cat", "/proc/self/cgroup")
				if err != nil {
					t.Fatal(err)
				}
				cell := filepath.Dir(groupOf(name, out)) // the request group's parent
				if prev, ok := where[id]; ok && prev != cell {
					t.Errorf("%s ran in %s, earlier in %s: cell not reused", id, cell, prev)
				}
				where[id] = cell
				l.Release()
			}
			if where["alice"] == where["bob"] {
				t.Errorf("alice and bob share %s", where["alice"])
			}
			if !strings.Contains(where["alice"], "/alice~") {
				t.Errorf("alice's cell %s is not named for her", where["alice"])
			}
			if st := p.Stats(); st.Created != 2 || st.Admitted != 4 || st.Cells != 2 {
				t.Errorf("stats %+v: want 2 cells created for 4 admissions", st)
			}
		})
	}
}

func TestBudgetFullThirdIdentityIsServedWhenACellFrees(t *testing.T) {
	p := openPool(t, autoBackend(t), Config{Budget: 512 * mib, CellMemory: 256 * mib})
	alice := acquire(t, p, "alice")
	acquire(t, p, "bob")
	got := make(chan error, 1)
	go func() {
		l, err := p.Acquire(context.Background(), "carol")
		if err == nil {
			defer l.Release()
		}
		got <- err
	}()
	waitFor(t, func() bool { return p.Stats().Queued == 1 })
	alice.Release()
	if err := <-got; err != nil {
		t.Fatalf("carol: %v", err)
	}
	if st := p.Stats(); st.Evicted != 1 || st.Cells != 2 || st.Waited != 1 {
		t.Errorf("stats %+v: want alice's idle cell evicted for carol", st)
	}
}

// waitFor polls a pool condition that no event announces (a goroutine
// having queued); the pool's own waits are event-driven.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached in 2s")
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		hold      []string
		ask       string
		wantCause string
		wantMsg   string
	}{
		{
			name: "budget full",
			cfg:  Config{Budget: 512 * mib, CellMemory: 256 * mib, QueueTimeout: 30 * time.Millisecond},
			hold: []string{"alice", "bob"}, ask: "carol",
			wantCause: "cell budget full",
			wantMsg:   "cell budget full: 2 of 2 cells busy; budget 512MiB / cell_memory 256MiB",
		},
		{
			name: "identity at cell_max_requests",
			cfg:  Config{Budget: 512 * mib, CellMemory: 256 * mib, MaxRequests: 2, QueueTimeout: 30 * time.Millisecond},
			hold: []string{"alice", "alice"}, ask: "alice",
			wantCause: "too many requests for identity",
			wantMsg:   "identity alice has 2 requests running (cell_max_requests 2)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := openPool(t, autoBackend(t), tt.cfg)
			for _, id := range tt.hold {
				acquire(t, p, id)
			}
			start := time.Now()
			_, err := p.Acquire(context.Background(), tt.ask)
			var bf *BudgetFull
			if !errors.As(err, &bf) {
				t.Fatalf("err = %v, want *BudgetFull", err)
			}
			if time.Since(start) < tt.cfg.QueueTimeout {
				t.Errorf("refused after %s, before queue_timeout %s", time.Since(start), tt.cfg.QueueTimeout)
			}
			if bf.HTTPStatus() != 503 || bf.RetryAfter() < time.Second || bf.Cause() != tt.wantCause || !strings.Contains(bf.Error(), tt.wantMsg) {
				t.Errorf("got %d, retry %s, cause %q, %q", bf.HTTPStatus(), bf.RetryAfter(), bf.Cause(), bf.Error())
			}
			if st := p.Stats(); st.Refused != 1 || st.Queued != 0 {
				t.Errorf("stats %+v: want one refusal and an empty queue", st)
			}
		})
	}
}

func TestAcquireReturnsContextErrorWhenClientLeaves(t *testing.T) {
	p := openPool(t, autoBackend(t), Config{Budget: 256 * mib, CellMemory: 256 * mib})
	acquire(t, p, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Acquire(ctx, "bob"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if st := p.Stats(); st.Queued != 0 || st.Refused != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestIdleCellIsEvictedToAdmitNewIdentity(t *testing.T) {
	b := autoBackend(t)
	p := openPool(t, b, Config{Budget: 512 * mib, CellMemory: 256 * mib, QueueTimeout: time.Second})
	a := acquire(t, p, "alice")
	aliceCell := a.c.rel
	a.Release()
	acquire(t, p, "bob")
	start := time.Now()
	acquire(t, p, "carol")
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("carol waited %s with an idle cell to evict", d)
	}
	if kids, _ := b.Children(filepath.Dir(aliceCell)); slices.Contains(kids, filepath.Base(aliceCell)) {
		t.Errorf("alice's evicted cell %s still exists", aliceCell)
	}
	if st := p.Stats(); st.Evicted != 1 || st.Waited != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestIdleEvictRemovesIdleCells(t *testing.T) {
	b := autoBackend(t)
	p := openPool(t, b, Config{Budget: 512 * mib, CellMemory: 256 * mib, IdleEvict: 50 * time.Millisecond})
	acquire(t, p, "alice").Release()
	busy := acquire(t, p, "bob")
	waitFor(t, func() bool { return p.Stats().IdleEvicted == 1 })
	st := p.Stats()
	if st.Cells != 1 {
		t.Errorf("stats %+v: want bob's busy cell kept", st)
	}
	busy.Release()
}

func TestReleaseKillsWhatTheRequestLeftRunning(t *testing.T) {
	p := openPool(t, autoBackend(t), Config{Budget: 256 * mib, CellMemory: 256 * mib})
	l := acquire(t, p, "alice")
	out, err := run(t, l, "/bin/sh", "-c", `setsid sleep 1000 >/dev/null 2>&1 & echo $!`)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	group := l.group
	l.Release()
	if procs, _ := p.b.Procs(group); len(procs) != 0 {
		t.Errorf("request group still holds %v", procs)
	}
	if err := waitGone(pid, 2*time.Second); err != nil {
		t.Error(err)
	}
	// The emptied group is the next request's.
	if l2 := acquire(t, p, "alice"); l2.group != group {
		t.Errorf("next request got %s, want the pooled %s", l2.group, group)
	}
}

func TestKernelEventsNameTheCellAndLimit(t *testing.T) {
	b := autoBackend(t)
	if !b.Enforces() {
		t.Skip("backend enforces no limits")
	}
	p := openPool(t, b, Config{Budget: 64 * mib, CellMemory: 32 * mib, CellPids: 8})
	// bob's concurrent request must not notice alice's trouble.
	bob := acquire(t, p, "bob")
	bobOut := make(chan string, 1)
	go func() {
		out, _ := run(t, bob, "/bin/sh", "-c", "sleep 0.5; echo fine")
		bobOut <- out
	}()

	alice := acquire(t, p, "alice")
	if _, err := run(t, alice, "/bin/sh", "-c", "head -c 200M /dev/zero | tail"); err == nil {
		t.Fatal("a program allocating 200M in a 32MiB cell succeeded")
	}
	ke, err := alice.KernelEvents()
	if err != nil || ke == nil {
		t.Fatalf("kernel events: %v, %v", ke, err)
	}
	if want := "killed by the kernel's OOM killer: cell alice reached its memory limit 32MiB"; ke.Error() != want || ke.Cause() != "oom killed" || ke.HTTPStatus() != 502 {
		t.Errorf("got %q (%s), want %q", ke.Error(), ke.Cause(), want)
	}
	alice.Release()

	// The next request in the same (pooled) group starts from zero.
	alice = acquire(t, p, "alice")
	if ke, _ := alice.KernelEvents(); ke != nil {
		t.Errorf("fresh request inherits events: %v", ke)
	}
	_, _ = run(t, alice, "/bin/sh", "-c", `i=0; while [ $i -lt 30 ]; do sleep 5 >/dev/null & i=$((i+1)); done 2>/dev/null`)
	ke, _ = alice.KernelEvents()
	if ke == nil || ke.Error() != "fork failed: cell alice reached its pids limit 8" || ke.Cause() != "pids limit" {
		t.Errorf("after fork bomb: %v", ke)
	}
	if out := <-bobOut; out != "fine\n" {
		t.Errorf("bob's concurrent request printed %q", out)
	}
	if ke, _ := bob.KernelEvents(); ke != nil {
		t.Errorf("bob has events: %v", ke)
	}
}

func TestStaleCellsFromKilledRunAreCleaned(t *testing.T) {
	b := autoBackend(t)
	lockDir := t.TempDir()
	testSeq++
	root := fmt.Sprintf("suserve-test-%d-%d", os.Getpid(), testSeq)
	t.Cleanup(func() { destroyTree(t, b, root) })
	cfg := Config{Root: root, LockDir: lockDir, Budget: 512 * mib, CellMemory: 256 * mib, QueueTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	first, err := Open(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := first.Acquire(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := run(t, l, "/bin/sh", "-c", `setsid sleep 1000 >/dev/null 2>&1 & echo $!`)
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	// The first instance dies: its lock goes with it, its cells stay.
	close(first.stop)
	<-first.done
	first.lockFile.Close()

	var log bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	second, err := Open(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if kids, _ := b.Children(root); len(kids) != 0 {
		t.Errorf("stale cells left: %v", kids)
	}
	if err := waitGone(pid, 2*time.Second); err != nil {
		t.Error(err)
	}
	if !strings.Contains(log.String(), "removed stale cell") || !strings.Contains(log.String(), "processes_killed=1") {
		t.Errorf("log does not report the cleanup:\n%s", log.String())
	}
}

func TestSecondInstanceOnSameSubtreeIsRefused(t *testing.T) {
	b := autoBackend(t)
	p := openPool(t, b, Config{Budget: 256 * mib, CellMemory: 256 * mib})
	_, err := Open(b, p.cfg)
	var le *InstanceLockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second Open: %v, want *InstanceLockedError naming pid %d", err, os.Getpid())
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"budget below one cell", Config{Budget: 100 * mib, CellMemory: 256 * mib}, "allows no cell"},
		{"root with a slash", Config{Root: "a/b", Budget: 256 * mib, CellMemory: 256 * mib}, "one path element"},
		{"root dot-dot", Config{Root: "..", Budget: 256 * mib, CellMemory: 256 * mib}, "one path element"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(newNone(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCloseRefusesQueuedRequests(t *testing.T) {
	b := autoBackend(t)
	testSeq++
	cfg := Config{Root: fmt.Sprintf("suserve-test-%d-%d", os.Getpid(), testSeq), LockDir: t.TempDir(),
		Budget: 256 * mib, CellMemory: 256 * mib, QueueTimeout: 5 * time.Second}
	p, err := Open(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	held, _ := p.Acquire(context.Background(), "alice")
	got := make(chan error, 1)
	go func() { _, err := p.Acquire(context.Background(), "bob"); got <- err }()
	waitFor(t, func() bool { return p.Stats().Queued == 1 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Errorf("queued request got %v, want ErrClosed", err)
	}
	held.Release()
	if _, err := p.Acquire(context.Background(), "carol"); !errors.Is(err, ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}

// TestFloodingIdentityDoesNotStarveAnother: with one cell, alice keeps many
// requests queued; bob's requests still get the cell in turn.
func TestFloodingIdentityDoesNotStarveAnother(t *testing.T) {
	p := openPool(t, autoBackend(t), Config{Budget: 256 * mib, CellMemory: 256 * mib, MaxRequests: 4, QueueTimeout: 10 * time.Second})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var floodServed int64
	var fmu sync.Mutex
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := p.Acquire(context.Background(), "alice")
				if err != nil {
					return
				}
				time.Sleep(2 * time.Millisecond) // holds the slot like a short program
				l.Release()
				fmu.Lock()
				floodServed++
				fmu.Unlock()
			}
		}()
	}
	waitFor(t, func() bool { return p.Stats().Queued > 0 })
	var lat []time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		l, err := p.Acquire(context.Background(), "bob")
		if err != nil {
			t.Fatalf("bob starved: %v", err)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(2 * time.Millisecond)
		l.Release()
	}
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	t.Logf("bob under alice's flood (1 cell, 8 alice workers): p50 %s, max %s; alice served %d", lat[len(lat)/2], lat[len(lat)-1], floodServed)
	if lat[len(lat)-1] > 5*time.Second {
		t.Errorf("bob waited %s", lat[len(lat)-1])
	}
}

func TestTenThousandIdentitiesThroughSixtyFourCells(t *testing.T) {
	b := autoBackend(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	p := openPool(t, b, Config{Budget: 64 * 256 * mib, CellMemory: 256 * mib, CellPids: 64})
	rss0 := rssKiB()
	start := time.Now()
	for i := 0; i < n; i++ {
		l, err := p.Acquire(context.Background(), "user"+strconv.Itoa(i))
		if err != nil {
			t.Fatalf("identity %d: %v", i, err)
		}
		l.Release()
		if i%500 == 0 {
			if st := p.Stats(); st.Cells > 64 {
				t.Fatalf("%d cells exist with a budget of 64", st.Cells)
			}
			if kids, _ := b.Children(p.cfg.Root); len(kids) > 64 {
				t.Fatalf("%d cell directories with a budget of 64", len(kids))
			}
		}
	}
	st := p.Stats()
	kids, _ := b.Children(p.cfg.Root)
	t.Logf("%d identities in %s (%s each); cells %d, created %d, evicted %d; dirs %d; RSS %d KiB -> %d KiB",
		n, time.Since(start).Round(time.Millisecond), (time.Since(start) / time.Duration(n)).Round(time.Microsecond),
		st.Cells, st.Created, st.Evicted, len(kids), rss0, rssKiB())
	if st.Cells != 64 || len(kids) != 64 || st.Created != uint64(n) || st.Evicted != uint64(n-64) {
		t.Errorf("stats %+v, %d dirs", st, len(kids))
	}
}

func rssKiB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func TestNoneBackendAdmitsWithoutGroups(t *testing.T) {
	p := openPool(t, newNone(), Config{Budget: 256 * mib, CellMemory: 256 * mib})
	l := acquire(t, p, "alice")
	out, err := run(t, l, "/bin/echo", "hi")
	if err != nil || out != "hi\n" {
		t.Fatalf("%q %v", out, err)
	}
	if err := l.Kill(context.Background()); !errors.Is(err, ErrNotTracked) {
		t.Errorf("Kill on none = %v, want ErrNotTracked", err)
	}
}
