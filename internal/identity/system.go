package identity

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// System resolves names from the host's account files, /etc/passwd and
// /etc/group, read directly rather than through NSS: the result never depends
// on a directory service being reachable, the files can be re-read when they
// change, and a lookup of a known name takes no lock and allocates at most the
// copy of its group list.
//
// The files are read on first use and then checked for a change (device,
// inode, size, modification and change time) at most once per Interval; a
// changed file is read again by whichever lookup noticed it, while other
// lookups go on with the previous table. Lines that cannot be used are
// skipped and reported to Logger (and by Problems). When a re-read fails, the
// previous table stays in use.
//
// A System must not be copied after first use.
type System struct {
	PasswdPath string        // "" means /etc/passwd
	GroupPath  string        // "" means /etc/group
	Interval   time.Duration // how often lookups look for a changed file; 0 means once a second
	Logger     *slog.Logger  // receives skipped lines and failed re-reads; nil means slog.Default()

	mu      sync.Mutex            // serialises loads; lookups never take it once a table exists
	cur     atomic.Pointer[table] // the immutable table lookups read
	due     atomic.Bool           // set by a timer once Interval has passed since the last check
	lastErr string                // the last failed re-read that was logged, under mu
}

// racyWindow is how recent a modification must be for its stamp not to be
// trusted; far above the kernel's timestamp granularity (a jiffy).
const racyWindow = 2 * time.Second

// maxFileSize bounds what an account file may hold; a larger one is refused
// instead of being read into memory.
const maxFileSize = 64 << 20

// table is one consistent reading of both files. It is never modified after
// it is published, so lookups may share it without locks.
type table struct {
	byName   map[string]Identity // Groups slices are shared: Lookup copies them
	byUID    map[uint32]string   // the first name with each uid, as getpwuid(3) finds it
	stamps   [2]stamp
	racy     bool // a file was modified too recently for its stamp to prove a later edit
	problems []LineError
	err      error // set when no reading has succeeded yet
}

// stamp is what is compared to notice that a file changed. Both times are
// kept: an in-place edit changes mtime, a rename over the file changes the
// inode, and a restored backup (mtime set back) still changes ctime.
type stamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func (s *System) passwdPath() string {
	if s.PasswdPath == "" {
		return "/etc/passwd"
	}
	return s.PasswdPath
}

func (s *System) groupPath() string {
	if s.GroupPath == "" {
		return "/etc/group"
	}
	return s.GroupPath
}

func (s *System) interval() time.Duration {
	if s.Interval <= 0 {
		return time.Second
	}
	return s.Interval
}

func (s *System) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Lookup returns the identity of the account name. It does not apply a
// Policy: wrap the System in Checked for that.
func (s *System) Lookup(name string) (Identity, error) {
	t := s.current()
	if t.err != nil {
		return Identity{}, t.err
	}
	id, ok := t.byName[name]
	if !ok {
		return Identity{}, &UnknownError{Name: name}
	}
	// The table is shared by every lookup; a caller that changed an element
	// of Groups would change the groups of later requests.
	id.Groups = slices.Clone(id.Groups)
	return id, nil
}

// LookupUID returns the identity of the first account with uid, as
// getpwuid(3) would.
func (s *System) LookupUID(uid uint32) (Identity, error) {
	t := s.current()
	if t.err != nil {
		return Identity{}, t.err
	}
	name, ok := t.byUID[uid]
	if !ok {
		return Identity{}, &UnknownError{UID: uid, ByUID: true}
	}
	id := t.byName[name]
	id.Groups = slices.Clone(id.Groups)
	return id, nil
}

// Problems returns the lines that the current table skipped (or partly
// skipped), for `suserve check` and the status page.
func (s *System) Problems() []LineError {
	return slices.Clone(s.current().problems)
}

// Reload checks the files now, whatever the Interval, and reads them again if
// they changed. It returns why they could not be read; the previous table,
// if any, then stays in use.
func (s *System) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.cur.Load() == nil
	err := s.refreshLocked()
	if first {
		s.armLocked() // as the first lookup would have
	}
	return err
}

// current returns the table to use, first checking for a changed file when
// the timer says Interval has passed. Reading a clock on every lookup would
// cost more than the lookup itself (about 50 ns through kvm-clock); the timer
// makes the common case one atomic load. Exactly one caller wins the
// compare-and-swap and checks; the others use the table they already have.
func (s *System) current() *table {
	t := s.cur.Load()
	if t == nil {
		s.mu.Lock()
		if s.cur.Load() == nil {
			_ = s.refreshLocked() // the error is in the table
			s.armLocked()
		}
		s.mu.Unlock()
		return s.cur.Load()
	}
	if s.due.Load() && s.due.CompareAndSwap(true, false) {
		s.mu.Lock()
		_ = s.refreshLocked()
		s.armLocked()
		s.mu.Unlock()
		t = s.cur.Load()
	}
	return t
}

// armLocked starts the timer that marks the next check as due. It is armed
// only by a check, so an idle server stats nothing; the timer runs no
// goroutine until it fires, and then only to set the flag.
func (s *System) armLocked() {
	time.AfterFunc(s.interval(), func() { s.due.Store(true) })
}

// refreshLocked re-reads the files if their stamps differ from the current
// table's. s.mu is held.
func (s *System) refreshLocked() error {
	old := s.cur.Load()
	paths := [2]string{s.passwdPath(), s.groupPath()}
	if old != nil && old.err == nil && !old.racy {
		same := true
		for i, p := range paths {
			st, err := statPath(p)
			if err != nil || st != old.stamps[i] {
				same = false
				break
			}
		}
		if same {
			return nil
		}
	}
	t, err := readTable(paths)
	if err != nil {
		if old == nil || old.err != nil {
			s.cur.Store(&table{err: err})
		}
		// A file that stays unreadable is logged once, not at every check.
		if msg := err.Error(); msg != s.lastErr {
			s.lastErr = msg
			if old != nil && old.err == nil {
				s.logger().Error("account files unreadable; the previous reading stays in use", "err", err)
			} else {
				s.logger().Error("account files unreadable; no user can be resolved", "err", err)
			}
		}
		return err
	}
	s.lastErr = ""
	s.cur.Store(t)
	// A file re-read only because its stamp was too recent usually has the
	// same skipped lines; they were reported already.
	if old == nil || old.err != nil || !slices.Equal(old.problems, t.problems) {
		report(s.logger(), t.problems)
	}
	return nil
}

// report logs skipped lines once per reading, at most a screenful of them.
func report(log *slog.Logger, problems []LineError) {
	const most = 20
	for i, p := range problems {
		if i == most {
			log.Warn("more account file lines skipped", "count", len(problems)-most)
			break
		}
		log.Warn("account file line skipped", "file", p.Path, "line", p.Line, "reason", p.Reason)
	}
}

// readTable reads and joins both files. Each file is opened once and stamped
// from that descriptor, so the stamp always describes the bytes that were read
// (a later change is noticed at the next check).
func readTable(paths [2]string) (*table, error) {
	var (
		data [2][]byte
		t    = &table{}
	)
	for i, p := range paths {
		b, st, err := readFile(p)
		if err != nil {
			return nil, err
		}
		data[i], t.stamps[i] = b, st
		// Timestamps come from a coarse kernel clock: an edit in place that
		// keeps the size, made within the same tick as the one just read,
		// leaves every field of the stamp as it is. A file modified that
		// recently is read again at the next check, whatever its stamp
		// (the "racy git" rule).
		if time.Since(time.Unix(0, st.mtime)) < racyWindow || time.Since(time.Unix(0, st.ctime)) < racyWindow {
			t.racy = true
		}
	}
	accounts, pp := parsePasswd(paths[0], data[0])
	groups, gp := parseGroup(paths[1], data[1])
	t.problems = append(pp, gp...)

	member := make(map[string][]uint32)
	for _, g := range groups {
		for _, m := range g.members {
			member[m] = append(member[m], g.gid)
		}
	}
	t.byName = make(map[string]Identity, len(accounts))
	t.byUID = make(map[uint32]string, len(accounts))
	for _, a := range accounts {
		var gs []uint32
		if m := member[a.name]; len(m) > 0 {
			// Exact capacity, so that an append by a caller of a copy
			// never writes into shared memory either.
			gs = sortedIDs(slices.Clone(m))
			gs = gs[:len(gs):len(gs)]
		}
		t.byName[a.name] = Identity{Name: a.name, UID: a.uid, GID: a.gid, Groups: gs, Home: a.home}
		if _, ok := t.byUID[a.uid]; !ok {
			t.byUID[a.uid] = a.name
		}
	}
	return t, nil
}

// FileError says which account file could not be read.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("identity: reading %s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

var errTooLarge = errors.New("file larger than 64 MiB")

func readFile(path string) ([]byte, stamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, stamp{}, &FileError{Path: path, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, stamp{}, &FileError{Path: path, Err: err}
	}
	if !fi.Mode().IsRegular() {
		return nil, stamp{}, &FileError{Path: path, Err: fmt.Errorf("not a regular file (%v)", fi.Mode().Type())}
	}
	if fi.Size() > maxFileSize {
		return nil, stamp{}, &FileError{Path: path, Err: errTooLarge}
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, stamp{}, &FileError{Path: path, Err: err}
	}
	if len(b) > maxFileSize {
		return nil, stamp{}, &FileError{Path: path, Err: errTooLarge}
	}
	return b, stampOf(fi), nil
}

func statPath(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stampOf(fi), nil
}

func stampOf(fi os.FileInfo) stamp {
	st := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = sys.Dev, sys.Ino
		st.ctime = sys.Ctim.Nano()
	}
	return st
}
