package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/suserve/suserve/internal/fcgi"
)

// Protocols a worker speaks.
const (
	ProtocolFastCGI = "fastcgi"
	ProtocolHTTP    = "http"
)

// Defaults for the zero values of Pool's fields.
const (
	DefaultStartTimeout = 10 * time.Second
	DefaultQueueTimeout = 30 * time.Second
	DefaultGrace        = 5 * time.Second
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = time.Minute
	DefaultMaxQueue     = 64
)

// Pool runs the workers of one app as one identity: it starts them on the
// first request, spreads requests over them, queues requests when all are
// busy, restarts workers that exit (holding restarts back exponentially in
// a crash loop), stops them when idle and on Close. Its exported fields are
// configuration, set before first use and not changed after.
type Pool struct {
	Name     string   // the app's name (its URL path), for logs and the launcher
	Protocol string   // ProtocolFastCGI or ProtocolHTTP
	Command  []string // argv of a worker; Command[0] is an absolute path
	Dir      string   // the worker's working directory
	Env      []string // extra environment, KEY=VALUE
	Identity string   // who the workers run as; "" is the server's own user
	Launcher Launcher

	// SocketDir is an existing directory the pool makes its own
	// subdirectory in (mode 0700) for the workers' sockets. Only suserve
	// itself connects to them: a worker inherits its listening descriptor
	// and never needs the path, so neither the worker's identity nor any
	// other user needs to reach the directory.
	SocketDir string

	Workers int // worker processes; 0 means 1
	// Concurrency is how many requests one worker is given at a time; 0
	// means 1 for FastCGI (php-cgi serves one connection at a time) and 64
	// for HTTP (a WebSocket holds its slot while open).
	Concurrency  int
	MaxQueue     int           // requests waiting for a free worker; 0 means DefaultMaxQueue, < 0 none
	StartTimeout time.Duration // start to readiness; 0 means DefaultStartTimeout
	QueueTimeout time.Duration // longest wait for a free worker; 0 means DefaultQueueTimeout
	IdleStop     time.Duration // stop the workers after this long without requests; 0 never
	Grace        time.Duration // SIGTERM to SIGKILL on stop; 0 means DefaultGrace
	BackoffMin   time.Duration // first hold-back in a crash loop; 0 means DefaultBackoffMin
	BackoffMax   time.Duration // longest hold-back; 0 means DefaultBackoffMax
	Logger       *slog.Logger

	// OnIdle, if set, is called (from its own goroutine, without locks) after
	// the pool stopped its workers for being idle.
	OnIdle func()

	mu      sync.Mutex
	dir     string // the private socket directory, once made
	workers []*worker
	// waiters are the requests waiting for a worker, oldest first. A
	// freed slot wakes one of them, not all: with many requests queued
	// on a few workers, waking every waiter for each freed slot cost
	// each request a goroutine wakeup per waiter. A worker that becomes
	// ready or goes, and Close, wake them all.
	waiters  []*waiter
	waiting  int
	inflight int
	lastUsed time.Time
	idle     *time.Timer
	closed   bool

	failures     int       // consecutive worker failures
	backoffUntil time.Time // no restarts before this
	lastFailure  *Failure
	started      uint64 // workers started, for the status page
	wg           sync.WaitGroup
}

func (p *Pool) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Pool) size() int { return max(p.Workers, 1) }
func (p *Pool) grace() time.Duration {
	return orDefault(p.Grace, DefaultGrace)
}

func (p *Pool) concurrency() int {
	switch {
	case p.Concurrency > 0:
		return p.Concurrency
	case p.Protocol == ProtocolHTTP:
		return 64
	}
	return 1
}

func (p *Pool) maxQueue() int {
	switch {
	case p.MaxQueue < 0:
		return 0
	case p.MaxQueue == 0:
		return DefaultMaxQueue
	}
	return p.MaxQueue
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Stats is a pool's state, for the status page and tests.
type Stats struct {
	Pids        []int // running workers' process ids
	Ready       int   // workers answering requests
	InFlight    int
	Waiting     int
	Started     uint64 // workers started since the pool was made
	Failures    int    // consecutive failures
	BackoffLeft time.Duration
	LastFailure *Failure
}

// Stats returns the pool's current state.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{InFlight: p.inflight, Waiting: p.waiting, Started: p.started, Failures: p.failures, LastFailure: p.lastFailure}
	for _, w := range p.workers {
		if w != nil && w.pid > 0 {
			s.Pids = append(s.Pids, w.pid)
		}
		if w != nil && w.ready {
			s.Ready++
		}
	}
	if d := time.Until(p.backoffUntil); d > 0 {
		s.BackoffLeft = d
	}
	return s
}

// waiter is one request waiting for a worker. Its channel holds at most
// one wakeup, so waking never blocks the waker.
type waiter struct{ wake chan struct{} }

// broadcast wakes every waiting request; p.mu is held.
func (p *Pool) broadcast() {
	for _, w := range p.waiters {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// wakeOne wakes the oldest waiting request not yet woken, for one freed
// slot; p.mu is held.
func (p *Pool) wakeOne() {
	for _, w := range p.waiters {
		select {
		case w.wake <- struct{}{}:
			return
		default:
		}
	}
}

// unqueue takes w out of the queue; p.mu is held. A wakeup it received but
// did not use (it timed out, or its client left) goes to the next waiter,
// so that a freed slot is never lost.
func (p *Pool) unqueue(w *waiter) {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			break
		}
	}
	select {
	case <-w.wake:
		p.wakeOne()
	default:
	}
}

// errRetired is acquire's answer after a per-user pool retired for being
// idle between being looked up and being asked: look it up again.
var errRetired = errors.New("app: pool retired")

// acquire returns a ready worker with a free slot, starting workers, waiting
// in the queue or failing with a *Failure.
func (p *Pool) acquire(ctx context.Context) (_ *worker, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer func() {
		if err != nil {
			// A pool that only fails (a crash loop) still goes idle, so
			// that a per-user map can drop it.
			p.armIdle()
		}
	}()
	if p.idle != nil {
		p.idle.Stop()
	}
	p.lastUsed = time.Now()
	var timer *time.Timer
	var me *waiter
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if me != nil {
			p.unqueue(me)
		}
	}()
	for {
		if p.closed {
			if p.OnIdle != nil {
				return nil, errRetired
			}
			return nil, newFailure(PoolStopped, nil, "the app is shutting down")
		}
		if f := p.crashLooping(); f != nil {
			return nil, f
		}
		if err := p.fill(); err != nil {
			return nil, err
		}
		if w := p.pick(); w != nil {
			w.inflight++
			p.inflight++
			p.lastUsed = time.Now()
			return w, nil
		}
		// A request may wait for a starting worker's free slots even
		// with max_queue = 0: the queue is for when every worker is busy,
		// and a cold pool's first requests must reach its workers.
		if starting := p.startingSlots(); p.waiting >= p.maxQueue()+starting {
			f := newFailure(QueueFull, nil, "all %d workers busy and %d requests waiting", p.size(), p.waiting)
			if starting > 0 {
				f.Detail = fmt.Sprintf("all %d workers busy or starting and %d requests waiting", p.size(), p.waiting)
			}
			f.RetryAfter = time.Second
			return nil, f
		}
		if timer == nil {
			timer = time.NewTimer(orDefault(p.QueueTimeout, DefaultQueueTimeout))
		}
		if me == nil {
			me = &waiter{wake: make(chan struct{}, 1)}
			p.waiters = append(p.waiters, me)
		}
		p.waiting++
		p.mu.Unlock()
		timedOut := false
		select {
		case <-me.wake:
		case <-ctx.Done():
			err = newFailure(ClientGone, ctx.Err(), "gave up waiting for a worker")
		case <-timer.C:
			timedOut = true
		}
		p.mu.Lock()
		p.waiting--
		if timedOut {
			f := newFailure(QueueTimeout, nil, "no worker free within %v", orDefault(p.QueueTimeout, DefaultQueueTimeout))
			f.RetryAfter = time.Second
			if p.lastFailure != nil && !p.anyReady() {
				f.Detail += "; last failure: " + p.lastFailure.Error()
			}
			err = f
		}
		if err != nil {
			return nil, err
		}
	}
}

// startingSlots is how many requests the workers that are still starting
// will take once ready; p.mu is held.
func (p *Pool) startingSlots() int {
	n := 0
	for _, w := range p.workers {
		if w != nil && !w.ready && !w.stopping && !w.dead() {
			n += p.concurrency()
		}
	}
	return n
}

// anyReady reports whether some worker answers requests; p.mu is held.
func (p *Pool) anyReady() bool {
	for _, w := range p.workers {
		if w != nil && w.ready {
			return true
		}
	}
	return false
}

// crashLooping returns the 503 a request gets while restarts are held back
// and no worker is running; p.mu is held.
func (p *Pool) crashLooping() *Failure {
	left := time.Until(p.backoffUntil)
	if left <= 0 || p.lastFailure == nil {
		return nil
	}
	for _, w := range p.workers {
		if w != nil {
			return nil
		}
	}
	lf := p.lastFailure
	f := newFailure(CrashLoop, lf, "%d consecutive worker failures, restarts held back for %v; last: %s",
		p.failures, left.Round(time.Millisecond), lf.Error())
	f.Stderr = lf.Stderr
	f.Exit, f.Signal = lf.Exit, lf.Signal
	f.RetryAfter = left
	return f
}

// fill starts a worker in every empty slot, unless restarts are held back;
// p.mu is held.
func (p *Pool) fill() error {
	if time.Now().Before(p.backoffUntil) {
		return nil
	}
	if p.workers == nil {
		p.workers = make([]*worker, p.size())
	}
	if p.dir == "" {
		dir, err := os.MkdirTemp(p.SocketDir, "app-")
		if err != nil {
			return newFailure(StartFailed, err, "creating the socket directory: %v", err)
		}
		// MkdirTemp makes it 0700 already; say so where it matters.
		if err := os.Chmod(dir, 0o700); err != nil {
			return newFailure(StartFailed, err, "%v", err)
		}
		p.dir = dir
	}
	for i, w := range p.workers {
		if w != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), orDefault(p.StartTimeout, DefaultStartTimeout))
		w = &worker{slot: i, sock: sockPath(p.dir, i), done: make(chan struct{}), cancel: cancel}
		if p.Protocol == ProtocolHTTP {
			w.tr = &http.Transport{
				DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return w.dial(ctx) },
				MaxIdleConnsPerHost: p.concurrency(),
				DisableCompression:  true,
			}
		} else {
			w.fc = &fcgi.Pool{Dial: w.dial, MaxIdle: p.concurrency()}
		}
		p.workers[i] = w
		p.started++
		p.wg.Add(1)
		go p.run(ctx, w)
	}
	return nil
}

// pick returns the ready worker with the fewest requests and a free slot,
// the lowest slot among equals: requests spread over the workers as load
// rises, and while it is light they go to the first worker, which stays
// warm, instead of waking every worker in turn. (With one Go HTTP worker
// the bench's app row spends about half the worker CPU per request that it
// spends with four; round-robin among idle workers paid that at any load.)
func (p *Pool) pick() *worker {
	var best *worker
	for _, w := range p.workers {
		if w == nil || !w.ready || w.stopping || w.inflight >= p.concurrency() || w.dead() {
			continue
		}
		if best == nil || w.inflight < best.inflight {
			best = w
		}
	}
	return best
}

// release gives a worker's slot back. healthy says the request completed,
// which proves the worker sound and ends a crash-loop count.
func (p *Pool) release(w *worker, healthy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.inflight--
	p.inflight--
	p.lastUsed = time.Now()
	if healthy {
		w.served = true
		p.failures = 0
	}
	p.wakeOne()
	p.armIdle()
}

// armIdle starts the idle timer when nothing is in flight; p.mu is held.
func (p *Pool) armIdle() {
	if p.IdleStop <= 0 || p.inflight > 0 || p.waiting > 0 || p.closed {
		return
	}
	if p.idle == nil {
		p.idle = time.AfterFunc(p.IdleStop, p.idleCheck)
		return
	}
	p.idle.Reset(p.IdleStop)
}

// idleCheck stops the workers once the pool has been idle for IdleStop.
func (p *Pool) idleCheck() {
	p.mu.Lock()
	if p.closed || p.inflight > 0 || p.waiting > 0 {
		p.mu.Unlock()
		return
	}
	if left := p.IdleStop - time.Since(p.lastUsed); left > 0 {
		p.idle.Reset(left)
		p.mu.Unlock()
		return
	}
	running := 0
	for _, w := range p.workers {
		if w != nil && !w.stopping {
			p.stop(w)
			running++
		}
	}
	p.mu.Unlock()
	if running > 0 {
		p.logger().Info("app workers stopped: idle", "app", p.Name, "identity", p.Identity, "workers", running, "idle_stop", p.IdleStop)
	}
	if p.OnIdle != nil {
		p.OnIdle()
	}
}

// stop stops w gracefully: SIGTERM, then after the grace period a kill of its
// process tree; p.mu is held.
func (p *Pool) stop(w *worker) {
	w.stopping = true
	w.cancel()
	if w.proc == nil {
		return // still launching: run sees stopping and kills it
	}
	// Idle kept-alive connections go first: a single-process worker such
	// as php-cgi blocked reading one would finish it before seeing SIGTERM.
	if w.fc != nil {
		w.fc.CloseIdle()
	}
	if w.tr != nil {
		w.tr.CloseIdleConnections()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := w.proc.Signal(syscall.SIGTERM); err != nil {
			w.proc.Kill()
		}
		t := time.NewTimer(p.grace())
		defer t.Stop()
		select {
		case <-w.done:
		case <-t.C:
			w.proc.Kill()
		}
	}()
}

// run starts w, probes it, and waits for it to exit.
func (p *Pool) run(ctx context.Context, w *worker) {
	defer p.wg.Done()
	if f := p.launch(w); f != nil {
		p.ended(w, f)
		return
	}
	p.mu.Lock()
	if w.stopping {
		p.stop(w)
	}
	p.mu.Unlock()
	log := p.logger().With("app", p.Name, "identity", p.Identity, "pid", w.pid)
	log.Info("app worker started", "protocol", p.Protocol, "socket", w.sock)

	if err := p.probe(ctx, w); err != nil {
		p.ended(w, p.startFailure(ctx, w, err))
		return
	}
	p.mu.Lock()
	w.ready = true
	p.broadcast()
	p.mu.Unlock()
	log.Info("app worker ready")

	<-w.done
	p.ended(w, exitFailure(w.exit, "while serving", w.lastLines()))
}

// startFailure says why a worker that was launched never answered its
// readiness probe, and makes sure it is gone.
func (p *Pool) startFailure(ctx context.Context, w *worker, err error) *Failure {
	if ctx.Err() == context.DeadlineExceeded {
		w.proc.Kill()
		<-w.done
		f := newFailure(NeverReady, err, "no answer on its socket within %v", orDefault(p.StartTimeout, DefaultStartTimeout))
		f.Stderr = w.lastLines()
		return f
	}
	// The probe failed because the worker exited (its exit cancels the
	// probe), or because it closed or broke its socket: then it exits soon.
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-w.done:
		return exitFailure(w.exit, "before answering on its socket", w.lastLines())
	case <-t.C:
	}
	w.proc.Kill()
	<-w.done
	f := newFailure(NeverReady, err, "readiness probe failed: %v", err)
	f.Stderr = w.lastLines()
	return f
}

// ended takes a worker that has exited (or never started) out of its slot
// and decides when its slot may be filled again.
func (p *Pool) ended(w *worker, f *Failure) {
	w.cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.workers[w.slot] == w {
		p.workers[w.slot] = nil
	}
	if w.fc != nil {
		w.fc.Close()
	}
	if w.tr != nil {
		w.tr.CloseIdleConnections()
	}
	os.Remove(w.sock)
	log := p.logger().With("app", p.Name, "identity", p.Identity, "pid", w.pid)
	if w.stopping || p.closed {
		log.Info("app worker stopped")
		p.broadcast()
		return
	}
	if w.served {
		p.failures = 0
	}
	p.failures++
	p.lastFailure = f
	delay := backoff(p.failures, orDefault(p.BackoffMin, DefaultBackoffMin), orDefault(p.BackoffMax, DefaultBackoffMax))
	p.backoffUntil = time.Now().Add(delay)
	attrs := []any{"cause", string(f.Cause), "detail", f.Detail, "failures", p.failures, "restart_in", delay}
	if len(f.Stderr) > 0 {
		attrs = append(attrs, "stderr", strings.Join(f.Stderr, "\n"))
	}
	log.Error("app worker failed", attrs...)
	p.broadcast()
	if delay == 0 && (p.waiting > 0 || p.inflight > 0 || p.IdleStop <= 0 || time.Since(p.lastUsed) < p.IdleStop) {
		// A worker that had been healthy is replaced at once.
		if err := p.fill(); err != nil {
			log.Error("app worker restart failed", "err", err)
		}
	}
}

// backoff is the hold-back before the n-th consecutive failure's restart:
// none for the first (a healthy worker that died is replaced at once), then
// min, 2·min, 4·min, ... up to max.
func backoff(n int, min, max time.Duration) time.Duration {
	if n <= 1 {
		return 0
	}
	d := min
	for i := 2; i < n && d < max; i++ {
		d *= 2
	}
	return time.Duration(minDur(int64(d), int64(max)))
}

func minDur(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

// Close stops the pool's workers gracefully (SIGTERM, then a kill after
// Grace) and waits for them to exit, or for ctx. Requests waiting for a
// worker fail with PoolStopped; requests in flight lose their worker.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		if p.idle != nil {
			p.idle.Stop()
		}
		for _, w := range p.workers {
			if w != nil && !w.stopping {
				p.stop(w)
			}
		}
		p.broadcast()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("app %s: workers still stopping: %w", p.Name, ctx.Err())
	}
	p.mu.Lock()
	dir := p.dir
	p.mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	return nil
}

// retireIfIdle marks an idle pool closed and reports whether it did; the
// caller then Closes it. A per-user pool map retires the pools that went
// idle, so that a user's worker costs nothing while the user is away.
func (p *Pool) retireIfIdle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.inflight > 0 || p.waiting > 0 {
		return false
	}
	p.closed = true
	for _, w := range p.workers {
		if w != nil && !w.stopping {
			p.stop(w)
		}
	}
	return true
}
