package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/identity"
	"github.com/suserve/suserve/internal/testutil"
)

// probePath is the fixture program built from testdata/probe in TestMain;
// base is a directory every test identity may enter.
var probePath, base string

// probeEnv names a probe already built, for a copy of the tests.
const probeEnv = "SUSERVE_TEST_PROBE"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	var err error
	base, err = os.MkdirTemp("", "spawn-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	probePath = filepath.Join(base, "probe")
	if p := os.Getenv(probeEnv); p != "" {
		// A copy of the tests run as an ordinary uid (AsUnprivileged),
		// which has no Go toolchain cache of its own: use the parent's probe.
		probePath = p
	} else {
		build := exec.Command("go", "build", "-o", probePath, "./testdata/probe")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building the probe: %v\n%s", err, out)
			return 1
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// staticIDs is an identity source over a fixed table, as the
// configuration's [[identities.static]] is.
type staticIDs map[string]identity.Identity

func (s staticIDs) Lookup(name string) (identity.Identity, error) {
	id, ok := s[name]
	if !ok {
		return identity.Identity{}, &identity.UnknownError{Name: name}
	}
	return id, nil
}

const groupUID = 61050 // a supplementary group of alice's

var testIDs = staticIDs{
	"alice": {Name: "alice", UID: testutil.AliceUID, GID: testutil.AliceUID, Groups: []uint32{testutil.AliceUID, groupUID}, Home: "/home/alice"},
	"bob":   {Name: "bob", UID: testutil.BobUID, GID: testutil.BobUID, Groups: []uint32{testutil.BobUID}, Home: "/home/bob"},
	"root":  {Name: "root", UID: 0, GID: 0, Home: "/root"},
	"wheel": {Name: "wheel", UID: testutil.CarolUID, GID: testutil.CarolUID, Groups: []uint32{0}},
	"low":   {Name: "low", UID: testutil.LowUID, GID: testutil.LowUID},
	"lowg":  {Name: "lowg", UID: testutil.CarolUID, GID: testutil.LowUID},
}

// fixture is a route directory and a launcher. As root its programs run as
// alice; otherwise as the test's own user.
type fixture struct {
	t   *testing.T
	dir string
	l   *Local
	who string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp(base, "route-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, l: &Local{Identities: testIDs}}
	if os.Geteuid() == 0 {
		f.who = "alice"
	}
	return f
}

// file writes a fixture file with exactly mode (not filtered by the umask).
func (f *fixture) file(name, content string, mode os.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	// unix.Chmod: os.Chmod drops the numeric setuid and setgid bits.
	if err := unix.Chmod(p, uint32(mode)); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// probe copies the probe program into the route directory.
func (f *fixture) probe(name string) string {
	f.t.Helper()
	b, err := os.ReadFile(probePath)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.file(name, string(b), 0o755)
}

func (f *fixture) spec(path string, args ...string) *Spec {
	return &Spec{Path: path, Args: append([]string{filepath.Base(path)}, args...), RouteDir: f.dir, Identity: f.who}
}

// run starts s, collects its standard output and returns it with the error
// of Start or of Wait.
func (f *fixture) run(s *Spec) (string, error) {
	f.t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.Close()
	s.Stdout = w
	p, err := f.l.Start(context.Background(), s)
	w.Close()
	if err != nil {
		return "", err
	}
	defer p.Kill()
	out, _ := io.ReadAll(r)
	return string(out), p.Wait()
}

// failure asserts that err is a *Failure of cause c and returns it.
func failure(t *testing.T, err error, c Cause) *Failure {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v (%T) is not a *Failure; want cause %q", err, err, c)
	}
	if f.Kind != c {
		t.Fatalf("cause %q (%v), want %q", f.Kind, f, c)
	}
	return f
}

// pidGone waits for pid's exit on a pidfd (readable once the process has
// exited), then checks it is dead.
func pidGone(t *testing.T, pid int) {
	t.Helper()
	if err := testutil.WaitPidExit(pid, 10*time.Second); err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	if state := procStat(pid); state != "" && state != "Z" && state != "X" {
		t.Fatalf("process %d is in state %s, want it dead", pid, state)
	}
}

// procStat is the state letter of /proc/pid/stat, or "" when pid is gone.
func procStat(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func asFailure(err error, f **Failure) bool { return errors.As(err, f) }

// devNull is /dev/null, open for reading and writing until tb ends: the
// descriptors of programs whose input and output do not matter.
func devNull(tb testing.TB) *os.File {
	tb.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}
