package identity

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/testutil"
)

// fixtureSystem returns a System reading testdata/passwd and testdata/group,
// logging into the returned buffer.
func fixtureSystem(t *testing.T) (*System, *testutil.LogBuffer) {
	t.Helper()
	log := &testutil.LogBuffer{}
	return &System{
		PasswdPath: "testdata/passwd",
		GroupPath:  "testdata/group",
		Logger:     slog.New(slog.NewTextHandler(log, nil)),
	}, log
}

func manyGroups() []uint32 {
	var gs []uint32
	for i := range uint32(40) {
		gs = append(gs, 62000+i)
	}
	return gs
}

func TestSystemResolvesFixtureAccounts(t *testing.T) {
	sys, _ := fixtureSystem(t)
	tests := []struct {
		name string
		want Identity
	}{
		{"root", Identity{Name: "root", UID: 0, GID: 0, Home: "/root"}},
		{"daemon", Identity{Name: "daemon", UID: 1, GID: 1, Home: "/usr/sbin"}},
		// users and staff share gid 100: it appears once. The first of the
		// two alice lines wins, as with getpwnam(3).
		{"alice", Identity{Name: "alice", UID: 61001, GID: 61001, Groups: []uint32{100, 61002, 61600, 62007}, Home: "/home/alice"}},
		// The password field is ignored; the home is cleaned; "bad member"
		// on the odd line does not cost bob his membership.
		{"bob", Identity{Name: "bob", UID: 61002, GID: 61002, Groups: []uint32{100, 61600}, Home: "/home/bob"}},
		{"carol", Identity{Name: "carol", UID: 61003, GID: 61003, Groups: []uint32{100}, Home: "/home/carol"}},
		{"wheel", Identity{Name: "wheel", UID: 61004, GID: 0, Home: "/home/wheel"}},
		{"admin", Identity{Name: "admin", UID: 61005, GID: 61005, Groups: []uint32{0}, Home: "/home/admin"}},
		{"nohome", Identity{Name: "nohome", UID: 61006, GID: 61006}},
		{"indented", Identity{Name: "indented", UID: 61007, GID: 61007, Home: "/home/indented"}},
		{"many", Identity{Name: "many", UID: 61009, GID: 61009, Groups: manyGroups(), Home: "/home/many"}},
		{"twin", Identity{Name: "twin", UID: 61001, GID: 61001, Home: "/home/twin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sys.Lookup(tt.name)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", tt.name, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Lookup(%q) = %+v, want %+v", tt.name, got, tt.want)
			}
		})
	}
}

func TestSystemSkipsMalformedLinesAsUnknown(t *testing.T) {
	sys, _ := fixtureSystem(t)
	for _, name := range []string{"short", "badid", "neg", "huge", "relhome", "bad name", "bad", "+nisuser", "nisuser", "", "toolong", "biggid", "nobody", "# an indented comment"} {
		_, err := sys.Lookup(name)
		var unknown *UnknownError
		if !errors.As(err, &unknown) || unknown.Name != name || !errors.Is(err, ErrUnknown) {
			t.Errorf("Lookup(%q) = %v, want an *UnknownError naming it", name, err)
		}
	}
}

func TestSystemReportsEverySkippedLine(t *testing.T) {
	sys, log := fixtureSystem(t)
	want := []struct {
		path string
		line int
		has  string
	}{
		{"testdata/passwd", 16, "6 fields, want 7"},
		{"testdata/passwd", 17, `uid "61x" is not a decimal number`},
		{"testdata/passwd", 18, `uid "-1" is not a decimal number`},
		{"testdata/passwd", 19, `uid "4294967295" is out of range`},
		{"testdata/passwd", 20, `home "home/rel" is not an absolute path`},
		{"testdata/passwd", 21, `user name "bad name" contains ' '`},
		{"testdata/passwd", 22, "NIS compat entry"},
		{"testdata/passwd", 23, `user "alice" is also on line 5`},
		{"testdata/passwd", 24, `user name "" is empty`},
		{"testdata/passwd", 25, "8 fields, want 7"},
		{"testdata/passwd", 26, `gid "99999999999" is out of range`},
		{"testdata/group", 7, `gid "abc" is not a decimal number`},
		{"testdata/group", 8, "3 fields, want 4"},
		{"testdata/group", 9, `member "bad member" contains ' '; that member is skipped`},
		{"testdata/group", 10, "NIS compat entry"},
	}
	got := sys.Problems()
	if len(got) != len(want) {
		t.Fatalf("Problems() = %d lines, want %d:\n%v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Path != w.path || g.Line != w.line || !strings.Contains(g.Reason, w.has) {
			t.Errorf("problem %d = %v, want %s:%d containing %q", i, &g, w.path, w.line, w.has)
		}
		if strings.Contains(g.Error(), "secrethash") {
			t.Errorf("problem %d quotes a password field: %v", i, &g)
		}
	}
	out := log.String()
	for _, w := range []string{"file=testdata/passwd line=16", "file=testdata/group line=10"} {
		if !strings.Contains(out, w) {
			t.Errorf("log lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "secrethash") {
		t.Errorf("log quotes a password field:\n%s", out)
	}
}

func TestSystemLookupUIDFindsTheFirstAccount(t *testing.T) {
	sys, _ := fixtureSystem(t)
	id, err := sys.LookupUID(61001)
	if err != nil || id.Name != "alice" {
		t.Errorf("LookupUID(61001) = %+v, %v; want alice (the first of alice and twin)", id, err)
	}
	_, err = sys.LookupUID(12345)
	var unknown *UnknownError
	if !errors.As(err, &unknown) || !unknown.ByUID || unknown.UID != 12345 || !errors.Is(err, ErrUnknown) {
		t.Errorf("LookupUID(12345) = %v, want an *UnknownError by uid", err)
	}
}

func TestLookupReturnsGroupsTheCallerMayChange(t *testing.T) {
	sys, _ := fixtureSystem(t)
	st, err := NewStatic([]Identity{{Name: "alice", UID: 61001, GID: 61001, Groups: []uint32{61002, 100}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]Source{"system": sys, "static": st} {
		t.Run(name, func(t *testing.T) {
			first, err := src.Lookup("alice")
			if err != nil {
				t.Fatal(err)
			}
			first.Groups[0] = 0
			_ = append(first.Groups[:1], 0)
			again, err := src.Lookup("alice")
			if err != nil {
				t.Fatal(err)
			}
			if again.Groups[0] != 100 || again.Groups[1] != 61002 {
				t.Errorf("after the caller changed its copy, Lookup gives groups %v", again.Groups)
			}
		})
	}
}

// accountFiles writes passwd and group files into a temporary directory.
type accountFiles struct {
	dir, passwd, group string
}

func newAccountFiles(t *testing.T, passwd, group string) *accountFiles {
	t.Helper()
	dir := t.TempDir()
	f := &accountFiles{dir: dir, passwd: filepath.Join(dir, "passwd"), group: filepath.Join(dir, "group")}
	f.replace(t, f.passwd, passwd)
	f.replace(t, f.group, group)
	return f
}

// replace writes content to a new file and renames it over path, as vipw
// and useradd do.
func (f *accountFiles) replace(t testing.TB, path, content string) {
	tmp := path + "+"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

// intervalPassed does what the System's timer does when Interval has passed.
// The tests that call it set an Interval of an hour, so the real timer never
// fires during them and every check is the test's doing.
func intervalPassed(s *System) { s.due.Store(true) }

func TestSystemRereadsChangedFilesAtMostOncePerInterval(t *testing.T) {
	files := newAccountFiles(t, "alice:x:61001:61001::/home/alice:/bin/sh\n", "web:x:61500:alice\n")
	sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Interval: time.Hour, Logger: slog.New(slog.DiscardHandler)}

	expect := func(step string, uid uint32, groups []uint32) {
		t.Helper()
		id, err := sys.Lookup("alice")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if id.UID != uid || !reflect.DeepEqual(id.Groups, groups) {
			t.Fatalf("%s: alice = uid %d groups %v, want uid %d groups %v", step, id.UID, id.Groups, uid, groups)
		}
	}
	expect("first read", 61001, []uint32{61500})

	files.replace(t, files.passwd, "alice:x:61002:61001::/home/alice:/bin/sh\n")
	expect("replaced, within the interval", 61001, []uint32{61500})
	intervalPassed(sys)
	expect("replaced, interval passed", 61002, []uint32{61500})
	files.replace(t, files.passwd, "alice:x:61004:61001::/home/alice:/bin/sh\n")
	expect("replaced again, the check was spent", 61002, []uint32{61500})
	intervalPassed(sys)
	expect("replaced again, interval passed", 61004, []uint32{61500})

	// An edit in place that keeps the size, right after the last read: the
	// stamp may not change at all, but a recently modified file is always
	// read again.
	if err := os.WriteFile(files.passwd, []byte("alice:x:61003:61001::/home/alice:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	intervalPassed(sys)
	expect("edited in place, same size", 61003, []uint32{61500})

	files.replace(t, files.group, "web:x:61500:alice\nlog:x:61501:bob,alice\n")
	intervalPassed(sys)
	expect("group file replaced", 61003, []uint32{61500, 61501})

	// Reload does not wait for the interval.
	files.replace(t, files.group, "web:x:61500:\n")
	if err := sys.Reload(); err != nil {
		t.Fatal(err)
	}
	expect("after Reload", 61003, nil)
}

func TestSystemNoticesChangesOnItsOwn(t *testing.T) {
	tests := []struct {
		name  string
		first func(*System) error
	}{
		{"first use is a lookup", func(s *System) error { _, err := s.Lookup("alice"); return err }},
		{"first use is Reload", (*System).Reload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := newAccountFiles(t, "alice:x:61001:61001::/home/alice:/bin/sh\n", "")
			sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Interval: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
			if err := tt.first(sys); err != nil {
				t.Fatal(err)
			}
			files.replace(t, files.passwd, "alice:x:61002:61001::/home/alice:/bin/sh\n")
			// The event is the System's own timer; lookups see its effect
			// once it has fired. The deadline only bounds a broken timer.
			deadline := time.Now().Add(10 * time.Second)
			for {
				id, err := sys.Lookup("alice")
				if err != nil {
					t.Fatal(err)
				}
				if id.UID == 61002 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("the change was not noticed without Reload")
				}
				runtime.Gosched()
			}
		})
	}
}

func TestSystemKeepsThePreviousTableWhenFilesBecomeUnreadable(t *testing.T) {
	files := newAccountFiles(t, "alice:x:61001:61001::/home/alice:/bin/sh\n", "")
	log := &testutil.LogBuffer{}
	sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(log, nil))}
	if _, err := sys.Lookup("alice"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(files.passwd); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		intervalPassed(sys)
		if id, err := sys.Lookup("alice"); err != nil || id.UID != 61001 {
			t.Fatalf("with passwd gone, Lookup(alice) = %+v, %v; want the previous reading", id, err)
		}
	}
	err := sys.Reload()
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != files.passwd || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Reload() = %v, want a *FileError for %s wrapping ErrNotExist", err, files.passwd)
	}
	if n := strings.Count(log.String(), "previous reading stays in use"); n != 1 {
		t.Errorf("the unreadable file was logged %d times, want once:\n%s", n, log.String())
	}

	files.replace(t, files.passwd, "alice:x:61009:61001::/home/alice:/bin/sh\n")
	intervalPassed(sys)
	if id, err := sys.Lookup("alice"); err != nil || id.UID != 61009 {
		t.Errorf("after passwd came back, Lookup(alice) = %+v, %v; want uid 61009", id, err)
	}
}

func TestSystemFailsWhenFilesCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	group := filepath.Join(dir, "group")
	if err := os.WriteFile(group, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, maxFileSize+1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		passwd string
		is     error
		says   string
	}{
		{"missing", filepath.Join(dir, "nonexistent"), fs.ErrNotExist, "no such file"},
		{"a directory", dir, nil, "not a regular file"},
		{"too large", huge, errTooLarge, "larger than 64 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := &System{PasswdPath: tt.passwd, GroupPath: group, Logger: slog.New(slog.DiscardHandler)}
			_, err := sys.Lookup("alice")
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != tt.passwd || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Lookup = %v, want a *FileError for %s saying %q", err, tt.passwd, tt.says)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Lookup = %v, want it to wrap %v", err, tt.is)
			}
			if errors.Is(err, ErrUnknown) {
				t.Errorf("an unreadable file is not an unknown user: %v", err)
			}
			if _, err := sys.LookupUID(61001); !errors.As(err, &fe) {
				t.Errorf("LookupUID = %v, want the *FileError", err)
			}
		})
	}
}

func TestSystemReadsTheHostFilesByDefault(t *testing.T) {
	sys := &System{Logger: slog.New(slog.DiscardHandler)}
	id, err := sys.Lookup("root")
	if err != nil {
		t.Fatalf("Lookup(root) on /etc/passwd: %v", err)
	}
	if id.UID != 0 {
		t.Errorf("root has uid %d", id.UID)
	}
}

// TestSystemConcurrentLookupsSeeWholeReadings runs lookups while the files
// are replaced and re-read: every lookup sees one reading, never a mix, and
// the race detector sees no unsynchronised access.
func TestSystemConcurrentLookupsSeeWholeReadings(t *testing.T) {
	version := func(v int) (string, string) {
		return fmt.Sprintf("alice:x:%d:%d::/home/v%d:/bin/sh\n", 61000+v, 61000+v, v),
			fmt.Sprintf("g:x:%d:alice\n", 62000+v)
	}
	p, g := version(1)
	files := newAccountFiles(t, p, g)
	// A tiny interval makes readers race to check for changes too.
	sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Interval: 50 * time.Microsecond, Logger: slog.New(slog.DiscardHandler)}

	const readers, versions = 4, 40
	var (
		wg   sync.WaitGroup
		done = make(chan struct{})
		seen atomic.Int64
	)
	for range readers {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				id, err := sys.Lookup("alice")
				if err != nil {
					t.Error(err)
					return
				}
				v := int(id.UID) - 61000
				if id.GID != id.UID || id.Home != fmt.Sprintf("/home/v%d", v) {
					t.Errorf("a lookup mixed readings: %+v", id)
					return
				}
				// The two files are separate: a reading may pair passwd
				// version v with the group file of a neighbouring version,
				// but each file is read whole.
				if len(id.Groups) != 1 || id.Groups[0] < uint32(62000+v-1) || id.Groups[0] > uint32(62000+v+1) {
					t.Errorf("version %d has groups %v", v, id.Groups)
					return
				}
				seen.Add(1)
			}
		})
	}
	for v := 2; v <= versions; v++ {
		p, g := version(v)
		files.replace(t, files.passwd, p)
		files.replace(t, files.group, g)
		if err := sys.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(done)
	wg.Wait()
	if id, err := sys.Lookup("alice"); err != nil || id.UID != 61000+versions {
		t.Errorf("after the last version, Lookup(alice) = %+v, %v", id, err)
	}
	if seen.Load() == 0 {
		t.Error("no lookup ran")
	}
}

func TestCachedLookupDoesNotAllocateBeyondItsGroups(t *testing.T) {
	sys, _ := fixtureSystem(t)
	sys.Interval = time.Hour
	if _, err := sys.Lookup("root"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		most float64
	}{
		{"root", 0},  // no supplementary groups: nothing to copy
		{"alice", 1}, // the copy of her groups
		{"many", 1},
	}
	for _, tt := range tests {
		n := testing.AllocsPerRun(100, func() { _, _ = sys.Lookup(tt.name) })
		if n > tt.most {
			t.Errorf("Lookup(%q) allocates %.0f times, want at most %.0f", tt.name, n, tt.most)
		}
	}
}

// TestSystemRereadsARecentlyModifiedFileWhateverItsStamp covers edits the
// stamp cannot show: an in-place rewrite of the same size within one tick of
// the kernel's timestamp clock. Such an edit cannot be made on demand, so the
// test gives the System a reading with the files' current stamps but other
// content, as that edit would leave it.
func TestSystemRereadsARecentlyModifiedFileWhateverItsStamp(t *testing.T) {
	files := newAccountFiles(t, "alice:x:61001:61001::/home/alice:/bin/sh\n", "")
	sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Logger: slog.New(slog.DiscardHandler)}
	if err := sys.Reload(); err != nil {
		t.Fatal(err)
	}
	fresh := sys.cur.Load()
	if !fresh.racy {
		t.Fatal("a reading of files written just now is not marked racy")
	}
	for _, racy := range []bool{false, true} {
		stale := &table{byName: map[string]Identity{}, stamps: fresh.stamps, racy: racy}
		sys.cur.Store(stale)
		if err := sys.Reload(); err != nil {
			t.Fatal(err)
		}
		_, err := sys.Lookup("alice")
		if racy && err != nil {
			t.Errorf("a racy reading with unchanged stamps was not read again: %v", err)
		}
		if !racy && err == nil {
			t.Error("a settled reading with unchanged stamps was read again; the stamp check does nothing")
		}
	}
}
