package cell

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config is the [cells] part of the configuration, in units the pool uses.
type Config struct {
	Root          string        // subtree name under suserve's own cgroup; default "suserve"
	Budget        int64         // bytes for all cells together
	CellMemory    int64         // bytes for one cell; Budget/CellMemory cells can exist
	CellPids      int64         // pids.max of a cell; 0 = none
	CellCPUWeight uint64        // cpu.weight of a cell (1..10000); 0 = the kernel's default
	MaxRequests   int           // concurrent requests per identity (cell_max_requests); 0 = unlimited
	IdleEvict     time.Duration // a cell idle this long is removed; 0 = only when its slot is needed
	QueueTimeout  time.Duration // how long Acquire waits for a slot before *BudgetFull
	LockDir       string        // where the instance lock lives; default /run/suserve
	Logger        *slog.Logger  // default slog.Default()
}

// killTimeout bounds a whole-tree kill: a SIGKILLed process is gone in
// microseconds unless it sits in an uninterruptible sleep.
const killTimeout = 5 * time.Second

// Pool holds the cells of one suserve instance and admits requests into
// them within the budget.
type Pool struct {
	b        Backend
	cfg      Config
	lim      Limits
	maxCells int
	log      *slog.Logger
	lockFile *os.File

	mu       sync.Mutex
	cells    map[string]*cell
	lru      list.List // of *cell, most recently released at the front
	waiters  map[string]*list.List
	rr       []string // identities with waiters, served round-robin
	cursor   int
	draining int
	leases   int
	closed   bool
	gen      uint64
	hold     time.Duration // moving average of how long a lease is held
	st       counters

	stop chan struct{}
	done chan struct{}
}

type counters struct {
	created, evicted, idleEvicted, refused, admitted, queued uint64
}

type cell struct {
	id       string
	rel      string
	busy     int
	lastUsed time.Time
	elem     *list.Element
	draining bool // chosen to make room for a waiting identity: takes no new leases
	ready    chan struct{}
	err      error         // creation failure, valid once ready is closed
	free     []pooledGroup // emptied request groups, for the next requests
	nreq     int
}

// pooledGroup is an empty request group and its event counters when it was
// emptied: the next request's events are counted from there.
type pooledGroup struct {
	name string
	base Events
}

type waiter struct {
	id   string
	ch   chan grant
	elem *list.Element
}

type grant struct {
	c      *cell
	create bool
	evict  *cell
	err    error
}

// Open takes the instance lock, creates the subtree (its memory limit is
// the whole budget where the backend enforces limits), kills and removes
// the cells a previous run left, and starts idle eviction.
func Open(b Backend, cfg Config) (*Pool, error) {
	if cfg.Root == "" {
		cfg.Root = "suserve"
	}
	if cfg.Root == "." || cfg.Root == ".." || strings.ContainsAny(cfg.Root, "/\x00") {
		return nil, fmt.Errorf("cell: root %q must be one path element", cfg.Root)
	}
	if cfg.LockDir == "" {
		cfg.LockDir = "/run/suserve"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CellMemory <= 0 || cfg.Budget < cfg.CellMemory {
		return nil, fmt.Errorf("cell: budget %s / cell_memory %s allows no cell", FormatBytes(cfg.Budget), FormatBytes(cfg.CellMemory))
	}
	p := &Pool{
		b: b, cfg: cfg, log: cfg.Logger,
		lim:      Limits{Memory: cfg.CellMemory, Pids: cfg.CellPids, CPUWeight: cfg.CellCPUWeight},
		maxCells: int(cfg.Budget / cfg.CellMemory),
		cells:    map[string]*cell{},
		waiters:  map[string]*list.List{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := p.takeLock(); err != nil {
		return nil, err
	}
	if err := b.Create(cfg.Root, &Limits{Memory: cfg.Budget}); err != nil {
		p.unlock()
		return nil, err
	}
	if err := p.cleanStale(); err != nil {
		p.unlock()
		return nil, err
	}
	go p.evictIdle()
	return p, nil
}

// takeLock holds an flock on a file named for the subtree for the life of
// the pool. The kernel drops it when the process dies, so a crashed
// instance never blocks its successor, and a live one always does.
func (p *Pool) takeLock() error {
	if err := os.MkdirAll(p.cfg.LockDir, 0o755); err != nil {
		return &FileError{Op: "mkdir", Path: p.cfg.LockDir, Err: unwrapPath(err)}
	}
	path := filepath.Join(p.cfg.LockDir, "cells-"+p.cfg.Root+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return &FileError{Op: "open", Path: path, Err: unwrapPath(err)}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		f.Close()
		if err == unix.EWOULDBLOCK {
			return &InstanceLockedError{Lock: path, Subtree: p.cfg.Root + " under " + p.b.Base(), PID: pid}
		}
		return &FileError{Op: "flock", Path: path, Err: err}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	p.lockFile = f
	return nil
}

func (p *Pool) unlock() {
	if p.lockFile != nil {
		_ = os.Remove(p.lockFile.Name())
		p.lockFile.Close()
	}
}

// cleanStale kills and removes every group under the subtree: with the
// lock held, they can only be left by a previous run of this instance.
func (p *Pool) cleanStale() error {
	kids, err := p.b.Children(p.cfg.Root)
	if err != nil {
		return err
	}
	for _, k := range kids {
		rel := p.cfg.Root + "/" + k
		n, err := p.destroy(rel)
		if err != nil {
			return fmt.Errorf("cell: removing stale cell %s: %w", k, err)
		}
		p.log.Info("removed stale cell from a previous run", "cell", k, "processes_killed", n)
	}
	return nil
}

// destroy kills and removes a cell and its request groups, returning how
// many processes it found.
func (p *Pool) destroy(rel string) (int, error) {
	kids, err := p.b.Children(rel)
	if err != nil {
		return 0, err
	}
	found := 0
	for _, k := range kids {
		n, err := p.killRemove(rel + "/" + k)
		found += n
		if err != nil {
			return found, err
		}
	}
	n, err := p.killRemove(rel)
	return found + n, err
}

func (p *Pool) killRemove(rel string) (int, error) {
	procs, err := p.b.Procs(rel)
	if err != nil {
		return 0, err
	}
	if len(procs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		err := p.b.Kill(ctx, rel)
		cancel()
		if err != nil && !errors.Is(err, ErrNotTracked) {
			return len(procs), err
		}
	}
	return len(procs), p.b.Remove(rel)
}

// cellName makes a directory name from an identity: unusual bytes are
// escaped, long names shortened with a hash, and a generation appended so
// that an identity's new cell never collides with its old one still being
// removed.
func cellName(id string, gen uint64) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || (c == '.' && i > 0) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	s := b.String()
	if len(s) > 128 {
		h := sha256.Sum256([]byte(id))
		s = s[:96] + "%" + hex.EncodeToString(h[:8])
	}
	return s + "~" + strconv.FormatUint(gen, 10)
}

// Acquire admits one request of identity: into its cell when it has one
// and is below MaxRequests; else into a new cell when the budget allows,
// evicting the least recently used idle cell if it must; else it waits in
// a queue served round-robin across identities (FIFO within one) for up to
// QueueTimeout, and then fails with *BudgetFull. A ctx that ends first
// returns ctx's error.
func (p *Pool) Acquire(ctx context.Context, identity string) (*Lease, error) {
	start := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	var g grant
	var ok bool
	// Nobody is queued ahead of this request: take a slot at once.
	if q := p.waiters[identity]; q == nil && (p.cells[identity] != nil || len(p.rr) == 0) {
		g, ok = p.tryAdmit(identity)
	}
	var w *waiter
	if !ok {
		w = &waiter{id: identity, ch: make(chan grant, 1)}
		q := p.waiters[identity]
		if q == nil {
			q = list.New()
			p.waiters[identity] = q
			p.rr = append(p.rr, identity)
		}
		w.elem = q.PushBack(w)
		p.st.queued++
		p.dispatch()
	}
	p.mu.Unlock()

	if w != nil {
		timer := time.NewTimer(p.cfg.QueueTimeout)
		select {
		case g = <-w.ch:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		if g.c == nil && g.err == nil {
			p.mu.Lock()
			select {
			case g = <-w.ch: // admitted while the timer fired
			default:
				p.unqueue(w)
				err := ctx.Err()
				if err == nil {
					err = p.refusal(identity, time.Since(start))
					p.st.refused++
				}
				p.mu.Unlock()
				return nil, err
			}
			p.mu.Unlock()
		}
		if g.err != nil {
			return nil, g.err
		}
	}
	return p.ready(ctx, g)
}

// tryAdmit takes a slot for identity if one is free now. Called with mu held.
func (p *Pool) tryAdmit(id string) (grant, bool) {
	if c := p.cells[id]; c != nil {
		if c.draining || (p.cfg.MaxRequests > 0 && c.busy >= p.cfg.MaxRequests) {
			return grant{}, false
		}
		c.busy++
		p.leases++
		p.st.admitted++
		return grant{c: c}, true
	}
	var victim *cell
	if len(p.cells) >= p.maxCells {
		victim = p.lruIdle()
		if victim == nil {
			return grant{}, false
		}
		p.forget(victim)
		p.st.evicted++
	}
	p.gen++
	c := &cell{id: id, rel: p.cfg.Root + "/" + cellName(id, p.gen), busy: 1, ready: make(chan struct{})}
	p.cells[id] = c
	c.elem = p.lru.PushFront(c)
	p.leases++
	p.st.admitted++
	p.st.created++
	return grant{c: c, create: true, evict: victim}, true
}

// lruIdle is the idle cell to evict: one already draining for a waiter
// first, else the least recently used. Called with mu held.
func (p *Pool) lruIdle() *cell {
	var pick *cell
	for e := p.lru.Back(); e != nil; e = e.Prev() {
		c := e.Value.(*cell)
		if c.busy > 0 {
			continue
		}
		if c.draining {
			return c
		}
		if pick == nil {
			pick = c
		}
	}
	return pick
}

// forget takes a cell out of the books (its directories are removed by the
// caller, outside the lock). Called with mu held.
func (p *Pool) forget(c *cell) {
	if p.cells[c.id] == c {
		delete(p.cells, c.id)
	}
	if c.elem != nil {
		p.lru.Remove(c.elem)
		c.elem = nil
	}
	if c.draining {
		c.draining = false
		p.draining--
	}
}

// dispatch admits queued requests while slots are free, one identity at a
// time in round-robin order, so an identity with many queued requests gets
// one turn per round like any other. When identities wait for a cell and
// none is idle, it marks the least recently used busy cells as draining:
// they take no new requests, so a flooding identity cannot keep its cell
// busy for ever while another waits. Called with mu held.
func (p *Pool) dispatch() {
	for progress := true; progress && len(p.rr) > 0; {
		progress = false
		n := len(p.rr)
		for i := 0; i < n; i++ {
			idx := (p.cursor + i) % len(p.rr)
			id := p.rr[idx]
			g, ok := p.tryAdmit(id)
			if !ok {
				continue
			}
			q := p.waiters[id]
			w := q.Remove(q.Front()).(*waiter)
			w.elem = nil
			if q.Len() == 0 {
				delete(p.waiters, id)
				p.rr = append(p.rr[:idx], p.rr[idx+1:]...)
				p.cursor = idx
			} else {
				p.cursor = idx + 1
			}
			if len(p.rr) > 0 {
				p.cursor %= len(p.rr)
			} else {
				p.cursor = 0
			}
			w.ch <- g
			progress = true
			break
		}
	}
	if len(p.cells) < p.maxCells {
		return
	}
	needing := 0
	for _, id := range p.rr {
		if c := p.cells[id]; c == nil || c.draining {
			needing++
		}
	}
	for e := p.lru.Back(); e != nil && p.draining < needing; e = e.Prev() {
		c := e.Value.(*cell)
		if !c.draining && p.waiters[c.id] == nil {
			c.draining = true
			p.draining++
		}
	}
	for e := p.lru.Back(); e != nil && p.draining < needing; e = e.Prev() {
		if c := e.Value.(*cell); !c.draining {
			c.draining = true
			p.draining++
		}
	}
}

// unqueue removes a waiter that gave up. Called with mu held.
func (p *Pool) unqueue(w *waiter) {
	q := p.waiters[w.id]
	if q == nil || w.elem == nil {
		return
	}
	q.Remove(w.elem)
	w.elem = nil
	if q.Len() > 0 {
		return
	}
	delete(p.waiters, w.id)
	for i, id := range p.rr {
		if id == w.id {
			p.rr = append(p.rr[:i], p.rr[i+1:]...)
			if p.cursor > i {
				p.cursor--
			}
			break
		}
	}
	if len(p.rr) == 0 {
		p.cursor = 0
	} else {
		p.cursor %= len(p.rr)
	}
	// A waiter for a new cell leaving may leave a cell draining for nobody.
	p.undrain()
}

// undrain returns draining cells to service when fewer identities wait for
// a cell than cells drain. Called with mu held.
func (p *Pool) undrain() {
	needing := 0
	for _, id := range p.rr {
		if c := p.cells[id]; c == nil || c.draining {
			needing++
		}
	}
	for e := p.lru.Front(); e != nil && p.draining > needing; e = e.Next() {
		if c := e.Value.(*cell); c.draining {
			c.draining = false
			p.draining--
		}
	}
}

func (p *Pool) refusal(id string, waited time.Duration) *BudgetFull {
	e := &BudgetFull{
		Identity: id, Cells: p.maxCells, Budget: p.cfg.Budget, CellMemory: p.cfg.CellMemory,
		Waited: waited, MaxRequests: p.cfg.MaxRequests,
		Retry: max(time.Second, p.hold.Round(time.Second)),
	}
	for _, c := range p.cells {
		if c.busy > 0 {
			e.Busy++
		}
	}
	if c := p.cells[id]; c != nil && !c.draining && p.cfg.MaxRequests > 0 && c.busy >= p.cfg.MaxRequests {
		e.PerIdentity = true
	}
	return e
}

// ready finishes an admission outside the lock: removes the evicted cell,
// creates the new one (or waits for its creator), and takes a request group.
func (p *Pool) ready(ctx context.Context, g grant) (*Lease, error) {
	c := g.c
	if g.evict != nil {
		if _, err := p.destroy(g.evict.rel); err != nil {
			p.log.Warn("evicting idle cell", "identity", g.evict.id, "err", err)
		}
	}
	if g.create {
		c.err = p.b.Create(c.rel, &p.lim)
		close(c.ready)
	} else {
		select {
		case <-c.ready:
		case <-ctx.Done():
			p.abandon(c, false)
			return nil, ctx.Err()
		}
	}
	if c.err != nil {
		p.abandon(c, true)
		return nil, c.err
	}
	p.mu.Lock()
	var pg pooledGroup
	fresh := false
	if n := len(c.free); n > 0 {
		pg = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		c.nreq++
		pg.name = "r" + strconv.Itoa(c.nreq)
		fresh = true
	}
	p.mu.Unlock()
	l := &Lease{p: p, c: c, group: c.rel + "/" + pg.name, name: pg.name, base: pg.base, start: time.Now()}
	if fresh {
		// A new group's counters start at zero: nothing to read.
		if err := p.b.Create(l.group, nil); err != nil {
			p.abandon(c, false)
			return nil, err
		}
	}
	return l, nil
}

// abandon gives back a slot whose admission failed; a cell that could not
// be created is forgotten so the next request tries afresh.
func (p *Pool) abandon(c *cell, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.busy--
	p.leases--
	if failed {
		p.forget(c)
		if c.busy == 0 {
			go func() { _, _ = p.destroy(c.rel) }()
		}
	}
	p.dispatch()
}

// Lease is one admitted request: a slot in its identity's cell and a
// request group inside it, where the program runs.
type Lease struct {
	p     *Pool
	c     *cell
	group string // relative to the backend base
	name  string
	base  Events
	start time.Time
	once  sync.Once
	// emptied is set when Kill has confirmed the group empty: nothing can
	// enter it afterwards but through this lease's Spawn, so Release need
	// not look again.
	emptied atomic.Bool
}

// Identity is the identity the lease was acquired for.
func (l *Lease) Identity() string { return l.c.id }

// Limits are the cell's limits.
func (l *Lease) Limits() Limits { return l.p.lim }

// Spawn forks the request's program into the request group (see SpawnFunc).
func (l *Lease) Spawn(fn SpawnFunc) (int, error) {
	l.emptied.Store(false)
	return l.p.b.Spawn(l.group, fn)
}

// Kill kills every process of the request, however it was detached, and
// returns once none is left (ErrNotTracked on the none backend).
func (l *Lease) Kill(ctx context.Context) error {
	err := l.p.b.Kill(ctx, l.group)
	if err == nil {
		l.emptied.Store(true)
	}
	return err
}

// Events are the kernel events of this request so far.
func (l *Lease) Events() (Events, error) {
	ev, err := l.p.b.Events(l.group)
	if err != nil {
		return Events{}, err
	}
	return ev.Sub(l.base), nil
}

// KernelEvents returns the cell events of this request as an error for the
// request's failure ("killed by the kernel's OOM killer: ..."), or nil when
// the kernel did nothing to it.
func (l *Lease) KernelEvents() (*KernelEvent, error) {
	ev, err := l.Events()
	if err != nil || (ev.OOMKills == 0 && ev.PidsMax == 0) {
		return nil, err
	}
	return &KernelEvent{Identity: l.c.id, Events: ev, Limits: l.p.lim}, nil
}

// Release ends the request: whatever it left running is killed, and the
// slot returns to the pool. Safe to call more than once.
func (l *Lease) Release() {
	l.once.Do(l.release)
}

func (l *Lease) release() {
	p := l.p
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	var err error
	var base Events
	if !closed { // Close has killed and removed everything already
		if !l.emptied.Load() {
			_, err = p.killRemoveKeep(l.group)
		}
		if err == nil {
			base, err = p.b.Events(l.group)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if closed {
		l.c.busy--
		p.leases--
		return
	}
	if err != nil {
		p.log.Warn("request group not emptied; not reused", "identity", l.c.id, "group", l.group, "err", err)
	} else {
		l.c.free = append(l.c.free, pooledGroup{name: l.name, base: base})
	}
	l.c.busy--
	p.leases--
	l.c.lastUsed = time.Now()
	d := time.Since(l.start)
	p.hold = p.hold - p.hold/8 + d/8
	if l.c.elem != nil {
		p.lru.MoveToFront(l.c.elem)
	}
	p.dispatch()
}

// killRemoveKeep empties a request group for its next use.
func (p *Pool) killRemoveKeep(rel string) (int, error) {
	procs, err := p.b.Procs(rel)
	if err != nil || len(procs) == 0 {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	if err := p.b.Kill(ctx, rel); err != nil && !errors.Is(err, ErrNotTracked) {
		return len(procs), err
	}
	return len(procs), nil
}

// KernelEvent is what the kernel did to a request in its cell. It
// implements the gateway's Diagnosis.
type KernelEvent struct {
	Identity string
	Events   Events
	Limits   Limits
}

func (e *KernelEvent) Error() string {
	var parts []string
	if e.Events.OOMKills > 0 {
		parts = append(parts, fmt.Sprintf("killed by the kernel's OOM killer: cell %s reached its memory limit %s", e.Identity, FormatBytes(e.Limits.Memory)))
	}
	if e.Events.PidsMax > 0 {
		parts = append(parts, fmt.Sprintf("fork failed: cell %s reached its pids limit %d", e.Identity, e.Limits.Pids))
	}
	return strings.Join(parts, "; ")
}

// Cause is "oom killed" or "pids limit".
func (e *KernelEvent) Cause() string {
	if e.Events.OOMKills > 0 {
		return "oom killed"
	}
	return "pids limit"
}

// HTTPStatus is 502: the program failed.
func (e *KernelEvent) HTTPStatus() int { return 502 }

// evictIdle removes cells idle for longer than IdleEvict.
func (p *Pool) evictIdle() {
	defer close(p.done)
	if p.cfg.IdleEvict <= 0 {
		<-p.stop
		return
	}
	t := time.NewTicker(min(max(p.cfg.IdleEvict/4, 10*time.Millisecond), 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			var old []*cell
			p.mu.Lock()
			for _, c := range p.cells {
				if c.busy == 0 && now.Sub(c.lastUsed) >= p.cfg.IdleEvict {
					p.forget(c)
					old = append(old, c)
					p.st.idleEvicted++
				}
			}
			p.mu.Unlock()
			for _, c := range old {
				if _, err := p.destroy(c.rel); err != nil {
					p.log.Warn("removing idle cell", "identity", c.id, "err", err)
				}
			}
			if len(old) > 0 {
				p.mu.Lock()
				p.dispatch()
				p.mu.Unlock()
			}
		}
	}
}

// Stats is the pool's state for the status page.
type Stats struct {
	Backend     string
	Enforced    bool
	Limits      Limits
	Budget      int64
	Cells       int // cells that exist
	MaxCells    int // Budget / CellMemory
	Busy        int // cells running at least one request
	Leases      int // requests running
	Queued      int // requests waiting
	Admitted    uint64
	Created     uint64
	Evicted     uint64 // idle cells removed to make room
	IdleEvicted uint64 // cells removed after IdleEvict
	Refused     uint64 // *BudgetFull returned
	Waited      uint64 // requests that had to queue
}

// Stats returns a snapshot.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{
		Backend: p.b.Name(), Enforced: p.b.Enforces(), Limits: p.lim, Budget: p.cfg.Budget,
		Cells: len(p.cells), MaxCells: p.maxCells, Leases: p.leases,
		Admitted: p.st.admitted, Created: p.st.created, Evicted: p.st.evicted,
		IdleEvicted: p.st.idleEvicted, Refused: p.st.refused, Waited: p.st.queued,
	}
	for _, c := range p.cells {
		if c.busy > 0 {
			s.Busy++
		}
	}
	for _, q := range p.waiters {
		s.Queued += q.Len()
	}
	return s
}

// Close refuses queued and new requests, kills every program in every cell,
// removes the subtree and drops the instance lock.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for _, q := range p.waiters {
		for e := q.Front(); e != nil; e = e.Next() {
			w := e.Value.(*waiter)
			w.elem = nil
			w.ch <- grant{err: ErrClosed}
		}
	}
	p.waiters = map[string]*list.List{}
	p.rr = nil
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	var first error
	kids, err := p.b.Children(p.cfg.Root)
	if err != nil {
		first = err
	}
	for _, k := range kids {
		if _, err := p.destroy(p.cfg.Root + "/" + k); err != nil && first == nil {
			first = err
		}
	}
	if err := p.b.Remove(p.cfg.Root); err != nil && first == nil {
		first = err
	}
	p.unlock()
	return first
}
