package spawn

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/testutil"
)

// chown gives path to uid (and its same-numbered group).
func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyRefusesEachCheckWithItsOwnCause(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	alice, bob := testutil.AliceUID, testutil.BobUID
	good := f.file("good", "#!/bin/sh\necho ok\n", 0o755)
	chown(t, good, alice)
	mine := func(name string, mode os.FileMode) string {
		p := f.file(name, "#!/bin/sh\necho ok\n", mode)
		chown(t, p, alice)
		unix.Chmod(p, uint32(mode)) // chown clears the setuid and setgid bits
		return p
	}
	// Symlinks: one leading out of the route directory to a file that is
	// otherwise fine, one staying inside.
	outsideDir, err := os.MkdirTemp(base, "outside-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(outsideDir)
	os.Chmod(outsideDir, 0o755)
	outside := filepath.Join(outsideDir, "fine")
	os.WriteFile(outside, []byte("#!/bin/sh\necho escaped\n"), 0o755)
	chown(t, outside, alice)
	os.Symlink(outside, filepath.Join(f.dir, "out-link"))
	os.Symlink("good", filepath.Join(f.dir, "in-link"))
	os.Mkdir(filepath.Join(f.dir, "real"), 0o755)
	os.WriteFile(filepath.Join(f.dir, "real", "x"), []byte("#!/bin/sh\necho ok\n"), 0o755)
	chown(t, filepath.Join(f.dir, "real", "x"), alice)
	os.Symlink("real", filepath.Join(f.dir, "dir-link"))
	os.Symlink(outsideDir, filepath.Join(f.dir, "dir-out"))
	// A directory writable by others, holding a fine program.
	wdir := filepath.Join(f.dir, "open")
	os.Mkdir(wdir, 0o755)
	os.Chmod(wdir, 0o777)
	inOpen := mine("open/x", 0o755)
	gdir := filepath.Join(f.dir, "gopen")
	os.Mkdir(gdir, 0o755)
	os.Chmod(gdir, 0o775)
	inGOpen := mine("gopen/x", 0o755)
	fifo := filepath.Join(f.dir, "fifo")
	unix.Mkfifo(fifo, 0o755)
	bobs := f.file("bobs", "#!/bin/sh\necho ok\n", 0o755)
	chown(t, bobs, bob)
	rootOwned := f.file("root-owned", "#!/bin/sh\necho ok\n", 0o755)

	for _, tc := range []struct {
		name     string
		identity string
		mode     string
		path     string
		routeDir string
		cause    Cause
		detail   string
	}{
		{"uid 0", "root", ModeOwner, good, "", RootIdentity, "uid 0"},
		{"supplementary group 0", "wheel", "", good, "", RootIdentity, "group 0"},
		{"uid below uid_min", "low", "", good, "", BelowMinimum, "uid below uid_min 1000"},
		{"gid below gid_min", "lowg", "", good, "", BelowMinimum, "gid below gid_min 1000"},
		{"unknown identity", "mallory", "", good, "", UnknownIdentity, `unknown user "mallory"`},
		{"server's own identity while root", "", "", good, "", RootIdentity, "never run as root"},
		{"no route directory", "alice", "", good, "-", NoRouteDir, "no absolute directory"},
		{"unknown mode", "alice", "sideways", good, "", BadMode, `"sideways"`},
		{"dot-dot", "alice", "", f.dir + "/real/../good", "", DotDot, `".."`},
		{"outside the route directory", "alice", "", "/bin/true", "", Outside, "not under the route directory"},
		{"symlink leading outside", "alice", "", filepath.Join(f.dir, "out-link"), "", Outside, "leads outside"},
		{"directory symlink leading outside", "alice", "", filepath.Join(f.dir, "dir-out", "fine"), "", Outside, "leads outside"},
		{"symlink inside", "alice", "", filepath.Join(f.dir, "in-link"), "", Symlink, "real path"},
		{"directory symlink inside", "alice", "", filepath.Join(f.dir, "dir-link", "x"), "", Symlink, "real path"},
		{"a directory", "alice", "", filepath.Join(f.dir, "real"), "", NotRegular, "a directory"},
		{"a FIFO", "alice", "", fifo, "", NotRegular, "a FIFO"},
		{"not executable", "alice", ModeOwner, mine("noexec", 0o644), "", NoExecBit, "no execute permission for uid 61001"},
		{"executable by others only", "alice", ModeOwner, mine("others-x", 0o645), "", NoExecBit, "mode 0645"},
		{"setuid", "alice", ModeOwner, mine("suid", 0o4755), "", SetID, "mode 4755"},
		{"setgid", "alice", ModeOwner, mine("sgid", 0o2755), "", SetID, "mode 2755"},
		{"writable by group", "alice", ModeOwner, mine("gw", 0o775), "", WritableFile, "writable by group"},
		{"writable by others", "alice", ModeOwner, mine("ow", 0o757), "", WritableFile, "writable by others"},
		{"directory writable by others", "alice", ModeOwner, inOpen, "", WritableDir, "0777 is writable by group and others"},
		{"directory writable by group", "alice", ModeOwner, inGOpen, "", WritableDir, "0775 is writable by group"},
		{"owner mode, another user's file", "alice", ModeOwner, bobs, "", OwnerMismatch, "owned by uid 61002, not by uid 61001"},
		{"owner mode, root's file", "alice", ModeOwner, rootOwned, "", OwnerMismatch, "owned by uid 0"},
		{"account mode, another user's file", "alice", ModeAccount, bobs, "", OwnerMismatch, "owned by uid 61002"},
		{"authenticated mode, another user's file", "alice", ModeAuthenticated, bobs, "", OwnerMismatch, "neither root nor uid 61001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.spec(tc.path)
			s.Identity, s.Mode = tc.identity, tc.mode
			switch tc.routeDir {
			case "-":
				s.RouteDir = ""
			case "":
			default:
				s.RouteDir = tc.routeDir
			}
			out, err := f.run(s)
			fl := failure(t, err, tc.cause)
			if !strings.Contains(fl.Error(), tc.detail) {
				t.Errorf("error %q does not name %q", fl.Error(), tc.detail)
			}
			if fl.HTTPStatus() != http.StatusForbidden || !strings.HasPrefix(fl.Cause(), "refused: ") {
				t.Errorf("status %d, cause %q; want 403 and a refusal", fl.HTTPStatus(), fl.Cause())
			}
			if out != "" {
				t.Errorf("a refused program ran: %q", out)
			}
		})
	}
}

func TestPolicyAllowsWhatEachModeAllows(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	mine := f.file("mine", "#!/bin/sh\nid -u\n", 0o755)
	chown(t, mine, testutil.AliceUID)
	rootOwned := f.file("root-owned", "#!/bin/sh\nid -u\n", 0o755)
	groupX := f.file("group-x", "#!/bin/sh\nid -u\n", 0o750)
	chown(t, groupX, 0)
	os.Chown(groupX, 0, groupUID) // alice is in groupUID: the group class applies
	for _, tc := range []struct {
		mode, path string
	}{
		{ModeOwner, mine}, {ModeAccount, mine}, {ModeAuthenticated, mine}, {ModeSelf, mine},
		{ModeAuthenticated, rootOwned}, {ModeSelf, rootOwned}, {"", rootOwned},
		{ModeAuthenticated, groupX},
	} {
		t.Run(tc.mode+" "+filepath.Base(tc.path), func(t *testing.T) {
			s := f.spec(tc.path)
			s.Mode = tc.mode
			out, err := f.run(s)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(out) != fmt.Sprint(testutil.AliceUID) {
				t.Fatalf("ran as %q", out)
			}
		})
	}
}

func TestProgramRunsWithTheIdentitysUidGidAndGroups(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	p := f.probe("p")
	want := map[string]string{
		"alice": fmt.Sprintf("%d %d [%d %d]", testutil.AliceUID, testutil.AliceUID, testutil.AliceUID, groupUID),
		"bob":   fmt.Sprintf("%d %d [%d]", testutil.BobUID, testutil.BobUID, testutil.BobUID),
	}
	// Two identities at once, many times: each program sees its own.
	var wg sync.WaitGroup
	for who := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				s := f.spec(p, "id")
				s.Identity = who
				out, err := f.run(s)
				if err != nil {
					t.Errorf("%s: %v", who, err)
					return
				}
				if got := strings.TrimSpace(out); got != want[who] {
					t.Errorf("%s's program reports %q, want %q", who, got, want[who])
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestNotRootRunsOnlyAsItself(t *testing.T) {
	// The refusal is for a server that is not root: as root, the test runs
	// itself again as an ordinary uid.
	if !testutil.AsUnprivileged(t, probeEnv+"="+probePath) {
		return
	}
	f := newFixture(t)
	s := f.spec(f.probe("p"), "id")
	s.Identity = "alice"
	_, err := f.run(s)
	failure(t, err, NotSelf)
}

// TestSymlinkSwapNeverRunsOutsidePolicy swaps a script for a symlink to a
// root-owned script outside the route directory (one that would pass every
// check but the route directory's) while programs are started: what runs is
// always the checked file, and the forbidden one never runs.
func TestSymlinkSwapNeverRunsOutsidePolicy(t *testing.T) {
	testutil.RequireRoot(t)
	f := newFixture(t)
	outsideDir, err := os.MkdirTemp(base, "forbidden-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(outsideDir)
	os.Chmod(outsideDir, 0o777)
	marker := filepath.Join(outsideDir, "marker")
	forbidden := filepath.Join(outsideDir, "forbidden")
	os.WriteFile(forbidden, []byte("#!/bin/sh\ntouch "+marker+"\necho forbidden\n"), 0o755)
	os.Chmod(forbidden, 0o755)

	script := filepath.Join(f.dir, "x")
	good := filepath.Join(f.dir, "x.good")
	link := filepath.Join(f.dir, "x.link")
	os.WriteFile(script, []byte("#!/bin/sh\necho ok\n"), 0o600)
	os.Chmod(script, 0o755)
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.WriteFile(good, []byte("#!/bin/sh\necho ok\n"), 0o600)
			os.Chmod(good, 0o755)
			os.Rename(good, script)
			os.Remove(link)
			os.Symlink(forbidden, link)
			os.Rename(link, script)
			n++
		}
	}()
	ran, refused := 0, 0
	for range 300 {
		s := f.spec(script)
		s.Mode = ModeAuthenticated
		out, err := f.run(s)
		switch {
		case err == nil && strings.TrimSpace(out) == "ok":
			ran++
		case err != nil:
			var fl *Failure
			if !asFailure(err, &fl) || (fl.Kind != Outside && fl.Kind != Symlink) {
				t.Errorf("unexpected error %v", err)
			}
			refused++
		default:
			t.Errorf("output %q", out)
		}
	}
	close(stop)
	n := <-swapped
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the forbidden program ran")
	}
	// A refusal may say "symlink" rather than "outside": the path is
	// resolved again, after the swap back, to tell which.
	t.Logf("%d swaps; %d runs of the checked script, %d refusals", n, ran, refused)
	if ran == 0 || refused == 0 {
		t.Logf("the race was not exercised both ways")
	}
}
