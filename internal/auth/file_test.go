package auth

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/suserve/suserve/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is a clock tests move by hand, so that "at most once a second"
// and TTLs are tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects log lines from concurrent writers.
// logBuffer collects what the package logs.
type logBuffer = testutil.LogBuffer

func bcryptLine(t testing.TB, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + string(h)
}

// replaceFile writes lines to path through a rename, as editors and
// SetPassword do, so the new version has a new inode.
func replaceFile(t testing.TB, path string, lines ...string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type fixture struct {
	h     *Htpasswd
	path  string
	clock *fakeClock
	log   *logBuffer
}

func newFixture(t testing.TB, lines ...string) *fixture {
	t.Helper()
	fx := &fixture{path: filepath.Join(t.TempDir(), "htpasswd"), clock: newFakeClock(), log: &logBuffer{}}
	replaceFile(t, fx.path, lines...)
	fx.h = &Htpasswd{Path: fx.path, Logger: fx.log.Logger(), now: fx.clock.Now}
	if err := fx.h.Load(); err != nil {
		t.Fatal(err)
	}
	return fx
}

func (fx *fixture) verify(user, password string) bool {
	return fx.h.Verify(user, []byte(password))
}

func TestEachSchemeLogsIn(t *testing.T) {
	bc := bcryptLine(t, "x", "myPassword")[2:]
	fx := newFixture(t,
		"bcrypt2a:"+bc,
		"bcrypt2y:$2y$"+bc[4:],
		"apr1:"+apacheAPR1,
		"sha:"+apacheSHA,
	)
	for _, user := range []string{"bcrypt2a", "bcrypt2y", "apr1", "sha"} {
		t.Run(user, func(t *testing.T) {
			if !fx.verify(user, "myPassword") {
				t.Error("the right password is refused")
			}
			if fx.verify(user, "mypassword") {
				t.Error("a wrong password is accepted")
			}
		})
	}
	if p := fx.h.Problems(); len(p) != 0 {
		t.Errorf("problems: %v", p)
	}
}

func TestUnknownUserCostsADummyHashCheck(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"), "des:"+apacheCRYPT, "plain:myPassword")
	for _, tc := range []struct{ user, password string }{
		{"nobody", "pw"},
		{"des", "myPassword"},   // the DES hash's right password: refused all the same
		{"plain", "myPassword"}, // likewise the plaintext line's
	} {
		before := fx.h.Stats()
		if fx.verify(tc.user, tc.password) {
			t.Errorf("%s logged in", tc.user)
		}
		after := fx.h.Stats()
		if after.DummyVerifications != before.DummyVerifications+1 || after.Verifications != before.Verifications {
			t.Errorf("%s: dummy checks %d -> %d, real %d -> %d; want exactly one dummy check",
				tc.user, before.DummyVerifications, after.DummyVerifications, before.Verifications, after.Verifications)
		}
	}
	// The dummy is a bcrypt hash of the table's cost, so an unknown user
	// pays what alice pays.
	if fx.h.dummy.scheme != Bcrypt || fx.h.dummy.cost != bcrypt.MinCost {
		t.Errorf("dummy is %v cost %d, want bcrypt cost %d", fx.h.dummy.scheme, fx.h.dummy.cost, bcrypt.MinCost)
	}
}

func TestWrongPasswordCostsOneHashCheck(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	if fx.verify("alice", "wrong") {
		t.Fatal("wrong password accepted")
	}
	if s := fx.h.Stats(); s.Verifications != 1 || s.DummyVerifications != 0 {
		t.Errorf("stats %+v, want one real check", s)
	}
}

func TestRefusedLinesAreLoggedWithFileLineAndUser(t *testing.T) {
	fx := newFixture(t, "ok:"+apacheSHA, "des:"+apacheCRYPT, "plain:hunter2", "oops")
	log := fx.log.String()
	for _, want := range []string{
		"file=" + fx.path + " line=2 user=des cause=\"DES-crypt hash refused\"",
		"line=3 user=plain cause=\"plaintext password refused\"",
		"line=4 user=\"\" cause=\"malformed line\"",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if s := fx.h.Stats(); s.Users != 1 || s.Refused != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestLoadOfMissingFileIsAFileError(t *testing.T) {
	h := &Htpasswd{Path: filepath.Join(t.TempDir(), "absent"), Logger: (&logBuffer{}).Logger()}
	err := h.Load()
	var ferr *FileError
	if !errors.As(err, &ferr) || !errors.Is(err, fs.ErrNotExist) || ferr.File != h.Path {
		t.Fatalf("Load = %v, want a FileError wrapping ErrNotExist", err)
	}
	if h.Verify("alice", []byte("pw")) {
		t.Error("logged in without a file")
	}
	if s := h.Stats(); s.DummyVerifications != 1 {
		t.Errorf("stats %+v: want a dummy check even with no table", s)
	}
}

func TestCacheAvoidsASecondHashCheckWithinTTL(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	for range 3 {
		if !fx.verify("alice", "pw") {
			t.Fatal("refused")
		}
		fx.clock.Advance(time.Minute)
	}
	if s := fx.h.Stats(); s.Verifications != 1 || s.CacheHits != 2 {
		t.Fatalf("stats %+v: want bcrypt once and two cache hits", s)
	}
	// A wrong password is never answered from the cache.
	if fx.verify("alice", "wrong") {
		t.Fatal("wrong password accepted")
	}
	if s := fx.h.Stats(); s.Verifications != 2 {
		t.Errorf("stats %+v: a wrong password must be checked", s)
	}
	// Past the TTL (5 minutes from the check, not from the last hit).
	fx.clock.Advance(3 * time.Minute)
	fx.verify("alice", "pw")
	if s := fx.h.Stats(); s.Verifications != 3 {
		t.Errorf("stats %+v: want a new check after the TTL", s)
	}
}

func TestCacheKeepsNoPassword(t *testing.T) {
	fx := newFixture(t, "alice:"+apacheSHA)
	fx.verify("alice", "myPassword")
	fx.h.mu.Lock()
	defer fx.h.mu.Unlock()
	for el := fx.h.cache.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*credEntry)
		if bytes.Contains(e.sum[:], []byte("myPassword")) {
			t.Error("cache entry holds the password")
		}
		sum := fx.h.cache.sum("alice", []byte("myPassword"))
		if e.sum != sum {
			t.Error("cache entry is not the keyed sum")
		}
	}
}

func TestCacheIsDroppedWhenTheFileChanges(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	fx.verify("alice", "pw")
	// The same password, rewritten: nothing about alice changed, yet the
	// cache goes, because the file is the authority.
	replaceFile(t, fx.path, bcryptLine(t, "alice", "pw"), "bob:"+apacheSHA)
	fx.clock.Advance(time.Second)
	if !fx.verify("alice", "pw") {
		t.Fatal("refused after reload")
	}
	if s := fx.h.Stats(); s.Verifications != 2 || s.CacheHits != 0 || s.Reloads != 2 {
		t.Errorf("stats %+v: want the cache dropped by the reload", s)
	}
}

func TestCacheIsBounded(t *testing.T) {
	fx := newFixture(t, "a:"+apacheSHA, "b:"+apacheSHA, "c:"+apacheSHA)
	fx.h.CacheSize = 2
	for _, u := range []string{"a", "b", "c", "a"} {
		fx.verify(u, "myPassword")
	}
	// a was evicted by c (least recently used), so it was checked twice.
	if s := fx.h.Stats(); s.Verifications != 4 {
		t.Errorf("stats %+v", s)
	}
	if n := fx.h.cache.len(); n != 2 {
		t.Errorf("cache holds %d, want 2", n)
	}
}

func TestNegativeTTLDisablesTheCache(t *testing.T) {
	fx := newFixture(t, "a:"+apacheSHA)
	fx.h.CacheTTL = -1
	fx.verify("a", "myPassword")
	fx.verify("a", "myPassword")
	if s := fx.h.Stats(); s.Verifications != 2 || s.CacheHits != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestConcurrentColdLoginsCostOneHashCheck(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if !fx.verify("alice", "pw") {
				t.Error("refused")
			}
		})
	}
	wg.Wait()
	if s := fx.h.Stats(); s.Verifications != 1 {
		t.Errorf("stats %+v: want one bcrypt for 16 concurrent requests", s)
	}
}

func TestFileIsRecheckedAtMostOnceASecond(t *testing.T) {
	fx := newFixture(t, "alice:"+apacheSHA)
	fx.h.CacheTTL = -1 // this is about the file, not the cache

	// alice gets another password.
	replaceFile(t, fx.path, "alice:"+apacheAPR1[:len(apacheAPR1)-1]+"0")
	fx.clock.Advance(999 * time.Millisecond)
	if !fx.verify("alice", "myPassword") {
		t.Fatal("the file was re-read within a second")
	}
	fx.clock.Advance(time.Millisecond)
	if fx.verify("alice", "myPassword") {
		t.Fatal("the changed file was not re-read after a second")
	}
	if s := fx.h.Stats(); s.Reloads != 2 {
		t.Errorf("reloads %d", s.Reloads)
	}
}

func TestFileWrittenInPlaceIsReloaded(t *testing.T) {
	fx := newFixture(t, "alice:"+apacheSHA)
	if err := os.WriteFile(fx.path, []byte("alice:"+apacheSHA+"\nbob:"+apacheSHA+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	fx.clock.Advance(time.Second)
	if !fx.verify("bob", "myPassword") {
		t.Fatal("a file rewritten in place was not reloaded")
	}
}

func TestUnchangedFileIsNotReread(t *testing.T) {
	fx := newFixture(t, "alice:"+apacheSHA)
	for range 3 {
		fx.clock.Advance(time.Second)
		fx.verify("alice", "myPassword")
	}
	if s := fx.h.Stats(); s.Reloads != 1 {
		t.Errorf("reloads %d, want 1", s.Reloads)
	}
}

func TestBadNewFileKeepsTheOldTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, path string)
		cause   string
	}{
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, "no such file or directory"},
		{"replaced by a directory", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"no usable line", func(t *testing.T, path string) {
			replaceFile(t, path, "\x7fELF\x02\x01\x01", "alice:"+apacheCRYPT)
		}, ErrNoUsableLine.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, "alice:"+apacheSHA)
			fx.h.CacheTTL = -1
			tc.breakIt(t, fx.path)
			for range 3 { // three checks, one log line
				fx.clock.Advance(time.Second)
				if !fx.verify("alice", "myPassword") {
					t.Fatal("the old table was dropped")
				}
			}
			if n := fx.log.Count("htpasswd not loaded"); n != 1 {
				t.Errorf("logged %d times, want once:\n%s", n, fx.log)
			}
			if !strings.Contains(fx.log.String(), tc.cause) || !strings.Contains(fx.log.String(), "kept_previous=true") {
				t.Errorf("log does not say why (%q):\n%s", tc.cause, fx.log)
			}
			if s := fx.h.Stats(); s.ReloadFailures == 0 {
				t.Errorf("stats %+v", s)
			}

			// Fixed: loaded at the next check.
			os.Remove(fx.path)
			replaceFile(t, fx.path, "bob:"+apacheSHA)
			fx.clock.Advance(time.Second)
			if !fx.verify("bob", "myPassword") || fx.verify("alice", "myPassword") {
				t.Error("the fixed file was not loaded")
			}
		})
	}
}

func TestPartlyBadNewFileLoadsItsGoodLines(t *testing.T) {
	fx := newFixture(t, "alice:"+apacheSHA, "bob:"+apacheSHA)
	replaceFile(t, fx.path, "alice:"+apacheCRYPT, "bob:"+apacheSHA)
	fx.clock.Advance(time.Second)
	if fx.verify("alice", "myPassword") {
		t.Error("alice, now on a DES line, still logs in")
	}
	if !fx.verify("bob", "myPassword") {
		t.Error("bob's good line was not loaded")
	}
	if p := fx.h.Problems(); len(p) != 1 || p[0].User != "alice" || p[0].Line != 1 {
		t.Errorf("problems %v", p)
	}
}

// BenchmarkVerify compares a login answered from the cache with one that
// pays bcrypt at the default cost, the choice the cache exists for.
func BenchmarkVerify(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	fx := newFixture(b, "alice:"+string(h))
	fx.h.now = nil // the real clock
	b.Run("warm cache", func(b *testing.B) {
		fx.verify("alice", "pw")
		for b.Loop() {
			if !fx.verify("alice", "pw") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("cold, bcrypt cost 10", func(b *testing.B) {
		fx.h.CacheTTL = -1
		fx.h.mu.Lock()
		fx.h.cache = nil
		fx.h.mu.Unlock()
		for b.Loop() {
			if !fx.verify("alice", "pw") {
				b.Fatal("refused")
			}
		}
	})
}
