package cell

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/testutil"
)

// realBackends returns this host's real cgroup backends, v1 and v2, each
// with a fresh test subtree that t.Cleanup kills and removes.
func realBackends(t *testing.T) map[string]Backend {
	t.Helper()
	testutil.RequireRoot(t)
	h, err := discover()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Backend{}
	if _, ok := judgeV1(h, true); ok {
		out[Cgroup1] = newV1(h.V1)
	}
	if _, ok, _ := judgeV2(h, true); ok {
		out[Cgroup2] = newV2(h.V2Dir, h.V2Controllers)
	}
	if len(out) == 0 {
		t.Skip("no cgroup hierarchy on this host")
	}
	return out
}

var testSeq int

// testRoot creates a uniquely named group directly under b's base and
// removes it and everything in it when t ends, passed or failed.
func testRoot(t *testing.T, b Backend) string {
	t.Helper()
	testSeq++
	rel := fmt.Sprintf("suserve-test-%d-%d", os.Getpid(), testSeq)
	if err := b.Create(rel, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { destroyTree(t, b, rel) })
	return rel
}

func destroyTree(t testing.TB, b Backend, rel string) {
	if _, err := b.Procs(rel); errors.Is(err, os.ErrNotExist) {
		return // removed by the code under test
	}
	kids, _ := b.Children(rel)
	for _, k := range kids {
		destroyTree(t, b, rel+"/"+k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Kill(ctx, rel); err != nil {
		t.Errorf("cleanup kill %s: %v", rel, err)
	}
	if err := b.Remove(rel); err != nil {
		t.Errorf("cleanup remove %s: %v", rel, err)
	}
}

// startIn starts argv in group rel of b and returns the command (to Wait)
// and its stdout.
func startIn(t *testing.T, b Backend, rel string, argv ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout = &out
	_, err := b.Spawn(rel, func(attr *syscall.SysProcAttr) (int, error) {
		attr.Setpgid = true
		cmd.SysProcAttr = attr
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatalf("spawn %v: %v", argv, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, &out
}

func TestDetectOnThisHost(t *testing.T) {
	h, err := discover()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind    string
		want    string // backend name, "" for an error
		reasonH string // part of the reason
	}{
		{kind: None, want: None, reasonH: "no limits"},
		{kind: "bogus", want: ""},
	}
	if _, ok, limits := judgeV2(h, true); ok && !limits {
		tests = append(tests,
			struct{ kind, want, reasonH string }{Cgroup2, Cgroup2, "has no controllers: limits unavailable"},
			struct{ kind, want, reasonH string }{Auto, Cgroup1, "has no controllers: limits unavailable"})
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			var b Backend
			var why string
			var err error
			if tt.kind == None || tt.kind == "bogus" {
				b, why, err = Detect(tt.kind)
			} else {
				b, why, err = detectFrom(tt.kind, h, true)
			}
			if tt.want == "" {
				var ue *UnavailableError
				if !errors.As(err, &ue) {
					t.Fatalf("Detect(%q) err = %v, want *UnavailableError", tt.kind, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Name() != tt.want || !strings.Contains(why, tt.reasonH) {
				t.Fatalf("Detect(%q) = %s, %q; want %s and a reason containing %q", tt.kind, b.Name(), why, tt.want, tt.reasonH)
			}
			t.Logf("%s: %s", b.Name(), why)
		})
	}
}

func TestDetectExplicitBackendMissingIsUnavailable(t *testing.T) {
	empty := host{V1: map[string]string{}}
	for _, kind := range []string{Cgroup1, Cgroup2} {
		_, _, err := detectFrom(kind, empty, true)
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.Backend != kind {
			t.Errorf("detect %s on a host without cgroups: %v, want *UnavailableError", kind, err)
		}
	}
	b, why, err := detectFrom(Auto, empty, true)
	if err != nil || b.Name() != None || !strings.Contains(why, "LIMITS ARE OFF") {
		t.Errorf("auto on a host without cgroups = %v, %q, %v; want none saying limits are off", b, why, err)
	}
}

func TestSpawnPlacesChildInGroupBeforeItRuns(t *testing.T) {
	for name, b := range realBackends(t) {
		t.Run(name, func(t *testing.T) {
			root := testRoot(t, b)
			rel := root + "/c-alice"
			if err := b.Create(rel, &Limits{Memory: 64 << 20, Pids: 16, CPUWeight: 100}); err != nil {
				t.Fatal(err)
			}
			// The program reads its own membership: what it sees is where
			// it ran from its first instruction on.
			cmd, out := startIn(t, b, rel, "/bin/cat", "/proc/self/cgroup")
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			got := parseProcCgroup(out.Bytes())
			self, _ := os.ReadFile("/proc/self/cgroup")
			mine := parseProcCgroup(self)
			switch name {
			case Cgroup1:
				for _, c := range []string{"memory", "pids", "freezer", "cpu"} {
					if want := filepath.Join(mine.V1[c], rel); got.V1[c] != want {
						t.Errorf("%s: child in %q, want %q", c, got.V1[c], want)
					}
				}
			case Cgroup2:
				if want := filepath.Join(mine.V2, rel); got.V2 != want {
					t.Errorf("child in %q, want %q", got.V2, want)
				}
			}
			// The spawning thread went back: this process is where it was.
			again, _ := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/cgroup", syscall.Gettid()))
			if !bytes.Equal(again, self) {
				t.Errorf("test thread membership changed:\n%s\nwas\n%s", again, self)
			}
		})
	}
}

func TestKillRemovesDoubleForkedSetsidGrandchild(t *testing.T) {
	for name, b := range realBackends(t) {
		t.Run(name, func(t *testing.T) {
			rel := testRoot(t, b) + "/r0"
			if err := b.Create(rel, nil); err != nil {
				t.Fatal(err)
			}
			r, w, _ := os.Pipe()
			defer r.Close()
			cmd := exec.Command("/bin/sh", "-c", `( setsid sh -c 'echo $$; exec sleep 1000' & ) ; exec sleep 1000`)
			cmd.Stdout = w
			if _, err := b.Spawn(rel, func(attr *syscall.SysProcAttr) (int, error) {
				cmd.SysProcAttr = attr
				return 0, cmd.Start()
			}); err != nil {
				t.Fatal(err)
			}
			w.Close()
			line := make([]byte, 32)
			n, _ := r.Read(line)
			gpid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
			if err != nil {
				t.Fatalf("grandchild pid: %q", line[:n])
			}
			if sid, _ := syscall.Getpgid(gpid); sid == 0 {
				t.Fatalf("grandchild %d not running", gpid)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := b.Kill(ctx, rel); err != nil {
				t.Fatal(err)
			}
			t.Logf("kill and confirm empty: %s", time.Since(start))
			if p, _ := b.Procs(rel); len(p) != 0 {
				t.Errorf("group not empty after Kill: %v", p)
			}
			// The direct child is a zombie until reaped; the grandchild was
			// reparented and must be gone entirely.
			_ = cmd.Wait()
			if err := waitGone(gpid, 2*time.Second); err != nil {
				t.Error(err)
			}
			if err := b.Remove(rel); err != nil {
				t.Errorf("remove after kill: %v", err)
			}
		})
	}
}

// waitGone waits for pid to disappear (its reaper is init, not us).
func waitGone(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; time.Now().Before(deadline); i++ {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
			return nil // dead, its reaper not yet scheduled
		}
		time.Sleep(backoff(i))
	}
	return fmt.Errorf("pid %d still alive", pid)
}

func TestOOMKillIsCountedInRequestGroup(t *testing.T) {
	b := realBackends(t)[Cgroup1]
	if b == nil {
		t.Skip("no cgroup1 memory hierarchy; the v2 mount here has no memory controller")
	}
	cellRel := testRoot(t, b) + "/c-alice"
	if err := b.Create(cellRel, &Limits{Memory: 32 << 20, Pids: 32}); err != nil {
		t.Fatal(err)
	}
	rel := cellRel + "/r0"
	if err := b.Create(rel, nil); err != nil {
		t.Fatal(err)
	}
	// tail keeps the last "line" of a newline-free stream in memory: it
	// grows until the cell's limit stops it.
	cmd, _ := startIn(t, b, rel, "/bin/sh", "-c", "head -c 200M /dev/zero | tail")
	err := cmd.Wait()
	ev, evErr := b.Events(rel)
	if evErr != nil {
		t.Fatal(evErr)
	}
	if ev.OOMKills < 1 {
		t.Fatalf("events %+v after %v, want an OOM kill", ev, err)
	}
	t.Logf("program ended %v; events %+v", err, ev)
}

func TestPidsLimitHitIsCounted(t *testing.T) {
	b := realBackends(t)[Cgroup1]
	if b == nil {
		t.Skip("no cgroup1 pids hierarchy")
	}
	cellRel := testRoot(t, b) + "/c-bob"
	if err := b.Create(cellRel, &Limits{Pids: 8}); err != nil {
		t.Fatal(err)
	}
	rel := cellRel + "/r0"
	if err := b.Create(rel, nil); err != nil {
		t.Fatal(err)
	}
	// A fork bomb in miniature: keeps forking until the kernel refuses.
	cmd, out := startIn(t, b, rel, "/bin/sh", "-c", `i=0; while [ $i -lt 50 ]; do sleep 30 >/dev/null & i=$((i+1)); done 2>/dev/null; echo started`)
	_ = cmd.Wait()
	ev, err := b.Events(rel)
	if err != nil {
		t.Fatal(err)
	}
	if ev.PidsMax < 1 {
		t.Fatalf("events %+v, want pids.max hits", ev)
	}
	procs, _ := b.Procs(rel)
	if len(procs) > 8 {
		t.Errorf("%d processes in a group limited to 8", len(procs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Kill(ctx, rel); err != nil {
		t.Fatal(err)
	}
	t.Logf("events %+v, %d members before kill, output %q", ev, len(procs), out.String())
}

func TestEventsOfGroupWithoutControllersAreZero(t *testing.T) {
	b := realBackends(t)[Cgroup2]
	if b == nil {
		t.Skip("no cgroup2 mount")
	}
	rel := testRoot(t, b)
	ev, err := b.Events(rel)
	if err != nil || ev != (Events{}) {
		t.Fatalf("events = %+v, %v; want zeros", ev, err)
	}
}

// TestV2LimitFiles checks the files a v2 cell's limits are written to, in a
// temporary directory laid out like cgroupfs: this host's v2 mount has no
// controllers, so the writes cannot be observed on the real one.
func TestV2LimitFiles(t *testing.T) {
	base := t.TempDir()
	rel := "suserve/c-alice"
	files := []string{"cgroup.subtree_control", "suserve/cgroup.subtree_control"}
	for _, f := range []string{"memory.max", "memory.high", "memory.swap.max", "pids.max", "cpu.weight", "cgroup.subtree_control"} {
		files = append(files, rel+"/"+f)
	}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(base, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v := newV2(base, []string{"cpuset", "cpu", "io", "memory", "pids"})
	if !v.Enforces() {
		t.Fatal("v2 with memory controller does not enforce")
	}
	if err := v.Create(rel, &Limits{Memory: 256 << 20, Pids: 64, CPUWeight: 300}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"cgroup.subtree_control":         "+memory +pids +cpu",
		"suserve/cgroup.subtree_control": "+memory +pids +cpu",
		rel + "/memory.max":              "268435456",
		rel + "/memory.high":             "251658240",
		rel + "/memory.swap.max":         "0",
		rel + "/pids.max":                "64",
		rel + "/cpu.weight":              "300",
	}
	for f, w := range want {
		got, _ := os.ReadFile(filepath.Join(base, f))
		if string(got) != w {
			t.Errorf("%s = %q, want %q", f, got, w)
		}
	}

	// A limit file that is not there (controller not enabled) fails with
	// an error naming it.
	os.Remove(filepath.Join(base, rel, "pids.max"))
	err := v.Create(rel, &Limits{Memory: 256 << 20, Pids: 64})
	var fe *FileError
	if !errors.As(err, &fe) || !strings.HasSuffix(fe.Path, "pids.max") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing pids.max: err = %v, want a *FileError naming it", err)
	}
}

func TestV1LimitWriteErrorNamesFile(t *testing.T) {
	b := realBackends(t)[Cgroup1]
	if b == nil {
		t.Skip("no cgroup1")
	}
	rel := testRoot(t, b)
	v := b.(*v1Backend)
	err := writeFile(filepath.Join(v.dir("pids", rel), "pids.max"), "lots")
	var fe *FileError
	if !errors.As(err, &fe) || !strings.HasSuffix(fe.Path, "pids.max") || !strings.Contains(err.Error(), "invalid argument") {
		t.Fatalf("err = %v, want a *FileError naming pids.max", err)
	}
}

// TestGroupStateIsReadAfresh: the backends keep control files open between
// requests; every read must still show the group as it is now — a process
// that entered a second after the last read, counters that moved since —
// and a group removed and made again under the same name must get files of
// its own.
func TestGroupStateIsReadAfresh(t *testing.T) {
	for name, b := range realBackends(t) {
		t.Run(name, func(t *testing.T) {
			rel := testRoot(t, b) + "/c-carol"
			for round := 0; round < 2; round++ {
				// The killed processes stay charged to the cell's pids
				// count until their reaper has run: each round makes the
				// cell anew, under the same name.
				req := rel + "/r1"
				// Looked at before it exists, the group has nothing to
				// show, and must not be remembered as missing.
				if _, err := b.Procs(req); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("round %d: a group not yet made lists processes: %v", round, err)
				}
				if ev, _ := b.Events(req); ev != (Events{}) {
					t.Fatalf("round %d: a group not yet made has events %+v", round, ev)
				}
				if err := b.Create(rel, &Limits{Pids: 4}); err != nil {
					t.Fatal(err)
				}
				if err := b.Create(req, nil); err != nil {
					t.Fatal(err)
				}
				before, err := b.Events(req)
				if err != nil {
					t.Fatal(err)
				}
				if procs, err := b.Procs(req); err != nil || len(procs) != 0 {
					t.Fatalf("round %d: new group lists %v, %v", round, procs, err)
				}
				cmd, _ := startIn(t, b, req, "/bin/sleep", "30")
				procs, err := b.Procs(req)
				if err != nil || !slices.Contains(procs, cmd.Process.Pid) {
					t.Fatalf("round %d: group lists %v (%v), not the program %d just placed in it", round, procs, err, cmd.Process.Pid)
				}
				if b.Enforces() {
					// A shell that forks until the cell's pids limit stops it
					// (then it exits): the counter read before must move.
					bomb, _ := startIn(t, b, req, "/bin/sh", "-c", `i=0; while [ $i -lt 10 ]; do sleep 30 >/dev/null & i=$((i+1)); done 2>/dev/null`)
					_ = bomb.Wait()
					ev, err := b.Events(req)
					if err != nil {
						t.Fatal(err)
					}
					if ev.Sub(before).PidsMax == 0 {
						t.Fatalf("round %d: pids.max hits do not show: %+v, before %+v", round, ev, before)
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err = b.Kill(ctx, req)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
				if procs, err := b.Procs(req); err != nil || len(procs) != 0 {
					t.Fatalf("round %d: after the kill the group lists %v, %v", round, procs, err)
				}
				if err := b.Remove(req); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if err := b.Remove(rel); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			}
		})
	}
}
