package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Defaults for Htpasswd's zero fields.
const (
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 10000

	// recheckInterval is how often the file is stat'ed for a change: at
	// most once a second, whatever the request rate.
	recheckInterval = time.Second

	// maxFileSize bounds what is read: an htpasswd file of a million users
	// is under 100 MiB, and anything larger is not an htpasswd file.
	maxFileSize = 128 << 20
)

// Htpasswd verifies passwords against an htpasswd file, re-reading it when it
// changes. Its fields are set before first use and not changed afterwards; its
// methods are safe for concurrent use.
//
// Reload policy: the file is stat'ed at most once a second and re-read when
// its inode, size, mtime or ctime differ. Bad lines in the new file are refused
// one by one (each logged with file, line and user; those users cannot log
// in) while the good lines load. A new file that cannot be read, or in which
// not one line is usable (a truncated write, a binary file), keeps the
// previous table, and the reason is logged once. Every reload drops the cache
// of verified credentials, so a changed or removed password stops working at
// the next check.
type Htpasswd struct {
	Path      string
	CacheTTL  time.Duration // how long a verified credential is remembered; 0: DefaultCacheTTL; negative: no cache
	CacheSize int           // how many credentials are remembered; 0: DefaultCacheSize
	Logger    *slog.Logger  // load and reload problems; nil: slog.Default()

	now func() time.Time // the clock; tests replace it

	reloadMu sync.Mutex // one reader of the file at a time

	mu       sync.Mutex // guards the fields below
	tab      *table
	id       fileID
	checked  time.Time
	lastErr  string // the last reload failure logged, so it is logged once
	gen      uint64 // incremented by each reload; a verification from an older generation is not cached
	cache    *credCache
	cacheKey [32]byte
	dummy    hash
	dummies  map[dummyKind]hash // by scheme and cost: generating a bcrypt hash costs as much as checking one
	flights  map[[32]byte]*flight
	keyed    bool // set once the cache key exists

	verifications, dummyChecks, cacheHits, reloads, reloadFailures atomic.Uint64
}

// HtpasswdStats counts what Htpasswd did, for the status page and metrics.
type HtpasswdStats struct {
	Users              int    // users who can log in
	Refused            int    // lines refused in the current table
	Verifications      uint64 // hash checks against a user's entry (each one bcrypt, apr1 or SHA)
	DummyVerifications uint64 // hash checks against the dummy hash, for unknown or refused users
	CacheHits          uint64 // credentials accepted from the cache, with no hash check
	Reloads            uint64 // tables loaded, the first included
	ReloadFailures     uint64 // reloads that kept the previous table
}

// FileError says why an htpasswd file could not be loaded as a whole.
type FileError struct {
	File string
	Err  error
}

func (e *FileError) Error() string { return fmt.Sprintf("htpasswd %s: %v", e.File, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// ErrNoUsableLine is the cause of a FileError for a file whose every line was
// refused: on reload, the previous table is kept.
var ErrNoUsableLine = errors.New("not one line is usable")

// fileID identifies a version of the file without reading it.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func idOf(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
		id.ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return id
}

type dummyKind struct {
	scheme Scheme
	cost   int
}

type flight struct {
	done chan struct{}
	ok   bool
}

func (h *Htpasswd) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

func (h *Htpasswd) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// Load reads the file now. It returns a *FileError when the file cannot be
// read, and then keeps the table it had (none before the first successful
// load). Refused lines are not errors of Load: each is logged, and Problems
// returns them. Verify loads the file itself if Load was never called.
func (h *Htpasswd) Load() error {
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	h.mu.Lock()
	h.checked = h.clock()
	h.mu.Unlock()
	return h.reload(true)
}

// Problems returns the lines refused in the current table.
func (h *Htpasswd) Problems() []*LineError {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tab == nil {
		return nil
	}
	return append([]*LineError(nil), h.tab.problems...)
}

// Stats returns counters and the current table's size.
func (h *Htpasswd) Stats() HtpasswdStats {
	s := HtpasswdStats{
		Verifications:      h.verifications.Load(),
		DummyVerifications: h.dummyChecks.Load(),
		CacheHits:          h.cacheHits.Load(),
		Reloads:            h.reloads.Load(),
		ReloadFailures:     h.reloadFailures.Load(),
	}
	h.mu.Lock()
	if h.tab != nil {
		s.Users, s.Refused = len(h.tab.entries), len(h.tab.problems)
	}
	h.mu.Unlock()
	return s
}

// maybeReload stats the file if the last check is a second old or more, and
// re-reads it if it changed. Requests arriving meanwhile use the old table.
func (h *Htpasswd) maybeReload(now time.Time) {
	h.mu.Lock()
	due := h.tab == nil || now.Sub(h.checked) >= recheckInterval || now.Before(h.checked)
	if due {
		h.checked = now
	}
	h.mu.Unlock()
	if !due {
		return
	}
	h.reloadMu.Lock()
	defer h.reloadMu.Unlock()
	_ = h.reload(false) // logged by reload
}

// reload reads the file if it changed since the current table (always when
// force is set). The caller holds reloadMu.
func (h *Htpasswd) reload(force bool) error {
	fail := func(err error, id fileID) error {
		ferr := &FileError{File: h.Path, Err: err}
		h.reloadFailures.Add(1)
		h.mu.Lock()
		h.id = id // the same file is not read again until it changes
		logIt := ferr.Error() != h.lastErr
		h.lastErr = ferr.Error()
		kept := h.tab != nil
		h.mu.Unlock()
		if logIt {
			h.logger().Error("htpasswd not loaded", "file", h.Path, "err", err, "kept_previous", kept)
		}
		return ferr
	}

	fi, err := os.Stat(h.Path)
	if err != nil {
		return fail(err, fileID{})
	}
	id := idOf(fi)
	h.mu.Lock()
	unchanged := id == h.id && (h.tab != nil || h.lastErr != "")
	h.mu.Unlock()
	if unchanged && !force {
		return nil
	}

	f, err := os.Open(h.Path)
	if err != nil {
		return fail(err, id)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return fail(err, id)
	}
	id = idOf(fi) // of what is read, should the file have been replaced since
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"), id)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fail(err, id)
	}
	if len(data) > maxFileSize {
		return fail(fmt.Errorf("larger than %d MiB", maxFileSize>>20), id)
	}

	t := parseTable(h.Path, data)
	h.mu.Lock()
	hadTable := h.tab != nil
	h.mu.Unlock()
	if len(t.entries) == 0 && len(t.problems) > 0 && hadTable {
		for _, p := range t.problems {
			h.logLine(p)
		}
		return fail(ErrNoUsableLine, id)
	}

	dummy := h.dummyFor(t)
	h.mu.Lock()
	h.tab, h.id, h.dummy, h.lastErr = t, id, dummy, ""
	h.gen++
	h.cache = nil // dropped: the next verification makes a new one
	h.mu.Unlock()
	h.reloads.Add(1)

	h.logger().Info("htpasswd loaded", "file", h.Path, "users", len(t.entries), "refused_lines", len(t.problems))
	for _, p := range t.problems {
		h.logLine(p)
	}
	return nil
}

func (h *Htpasswd) logLine(p *LineError) {
	h.logger().Warn("htpasswd line refused", "file", p.File, "line", p.Line, "user", p.User,
		"cause", p.Cause.String(), "detail", p.Detail)
}

// dummyFor returns the hash that unknown and refused users are checked
// against: one of the table's most common scheme and cost, so that an unknown
// user costs what most known users cost and timing does not tell who exists.
// With no entries, bcrypt at the default cost.
func (h *Htpasswd) dummyFor(t *table) hash {
	counts := make(map[dummyKind]int)
	best, bestN := dummyKind{Bcrypt, bcrypt.DefaultCost}, 0
	for _, e := range t.entries {
		k := dummyKind{e.scheme, e.cost}
		counts[k]++
		if n := counts[k]; n > bestN || n == bestN && k.scheme == Bcrypt && k.cost > best.cost {
			best, bestN = k, n
		}
	}
	h.mu.Lock()
	d, ok := h.dummies[best]
	h.mu.Unlock()
	if ok {
		return d
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	switch best.scheme {
	case APR1:
		salt := make([]byte, 8)
		for i := range salt {
			salt[i] = cryptAlphabet[int(pw[i])%len(cryptAlphabet)]
		}
		d = hash{scheme: APR1, value: apr1(pw, string(salt))}
	case SHA1:
		d = hash{scheme: SHA1, value: string(make([]byte, 20))}
	default:
		v, err := bcrypt.GenerateFromPassword(pw, best.cost)
		if err != nil {
			panic(fmt.Sprintf("auth: bcrypt dummy hash at cost %d: %v", best.cost, err)) // cost was validated at parse
		}
		d = hash{scheme: Bcrypt, cost: best.cost, value: string(v)}
	}
	h.mu.Lock()
	if h.dummies == nil {
		h.dummies = make(map[dummyKind]hash)
	}
	h.dummies[best] = d
	h.mu.Unlock()
	return d
}

// cacheLocked returns the current credential cache, making it after a
// reload. The caller holds mu.
func (h *Htpasswd) cacheLocked() *credCache {
	if !h.keyed {
		rand.Read(h.cacheKey[:]) // per process: sums are useless anywhere else
		h.flights = make(map[[32]byte]*flight)
		h.keyed = true
	}
	if h.cache == nil {
		ttl, size := h.CacheTTL, h.CacheSize
		if ttl == 0 {
			ttl = DefaultCacheTTL
		}
		if size == 0 {
			size = DefaultCacheSize
		}
		h.cache = newCredCache(h.cacheKey, ttl, size)
	}
	return h.cache
}

// Verify reports whether password is user's password. A credential verified
// less than CacheTTL ago is accepted from the cache; otherwise it costs one
// hash check, and concurrent checks of the same user and password share it.
// An unknown user, or one whose line was refused, costs a check against a
// dummy hash of the table's most common scheme and cost, as a wrong password
// would.
func (h *Htpasswd) Verify(user string, password []byte) bool {
	now := h.clock()
	h.maybeReload(now)

	h.mu.Lock()
	c := h.cacheLocked()
	sum := c.sum(user, password)
	if c.hit(user, sum, now) {
		h.mu.Unlock()
		h.cacheHits.Add(1)
		return true
	}
	if f, ok := h.flights[sum]; ok {
		h.mu.Unlock()
		<-f.done
		return f.ok
	}
	f := &flight{done: make(chan struct{})}
	h.flights[sum] = f
	tab, dummy, gen := h.tab, h.dummy, h.gen
	h.mu.Unlock()

	var e hash
	var known bool
	if tab != nil {
		e, known = tab.entries[user]
	}
	var ok bool
	if known {
		h.verifications.Add(1)
		ok = e.verify(password)
	} else {
		h.dummyChecks.Add(1)
		if dummy.scheme == 0 { // never loaded: no table, so no dummy yet
			dummy = h.dummyFor(&table{})
		}
		dummy.verify(password)
	}

	h.mu.Lock()
	delete(h.flights, sum)
	if ok && gen == h.gen {
		h.cacheLocked().put(user, sum, now)
	}
	h.mu.Unlock()
	f.ok = ok
	close(f.done)
	return ok
}

// VerifyCached reports whether user and password were verified less than
// CacheTTL ago. It never checks a hash, so it costs nothing to an attacker's
// target; Basic uses it for addresses over their failure limit.
func (h *Htpasswd) VerifyCached(user string, password []byte) bool {
	now := h.clock()
	h.maybeReload(now)
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.cacheLocked()
	if c.hit(user, c.sum(user, password), now) {
		h.cacheHits.Add(1)
		return true
	}
	return false
}
