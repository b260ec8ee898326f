package app

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"sync"

	"github.com/suserve/suserve/internal/cgi"
)

// UserPools gives each authenticated user a pool of their own workers
// running as themselves (run_as = "authenticated"), the way JupyterHub runs
// one server per user. Pools are made on a user's first request and retired
// when they have been idle for their IdleStop, so an absent user costs
// nothing.
type UserPools struct {
	// New returns the (unstarted) pool for identity. It must set the pool's
	// Identity; UserPools sets its OnIdle.
	New func(identity string) *Pool

	mu     sync.Mutex
	pools  map[string]*Pool
	closed bool
	wg     sync.WaitGroup // pools being retired
}

// PoolFor returns the pool of the request's authenticated user (its
// cgi.Record's User), making it on first use.
func (u *UserPools) PoolFor(r *http.Request) (*Pool, error) {
	user := cgi.RecordFrom(r.Context()).User
	if user == "" {
		return nil, newFailure(NoUser, nil, "this app runs as the authenticated user, and the request has none")
	}
	return u.Pool(user)
}

// Pool returns identity's pool, making it on first use.
func (u *UserPools) Pool(identity string) (*Pool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, newFailure(PoolStopped, nil, "the app is shutting down")
	}
	if p, ok := u.pools[identity]; ok {
		return p, nil
	}
	if u.pools == nil {
		u.pools = make(map[string]*Pool)
	}
	p := u.New(identity)
	p.OnIdle = func() { u.retire(identity, p) }
	u.pools[identity] = p
	return p, nil
}

// retire drops an idle pool from the map and stops its workers. A request
// that looked the pool up just before is told to look again (errRetired).
func (u *UserPools) retire(identity string, p *Pool) {
	u.mu.Lock()
	if u.pools[identity] != p || !p.retireIfIdle() {
		u.mu.Unlock()
		return
	}
	delete(u.pools, identity)
	u.wg.Add(1)
	u.mu.Unlock()
	defer u.wg.Done()
	_ = p.Close(context.Background())
}

// UserStats is one user's pool as Stats reports it.
type UserStats struct {
	Identity string
	Stats    Stats
}

// Stats reports every user's pool that exists now, sorted by user. It
// makes no pool.
func (u *UserPools) Stats() []UserStats {
	u.mu.Lock()
	pools := make([]UserStats, 0, len(u.pools))
	byID := make(map[string]*Pool, len(u.pools))
	for id, p := range u.pools {
		pools = append(pools, UserStats{Identity: id})
		byID[id] = p
	}
	u.mu.Unlock()
	// Each pool's lock is taken outside u.mu, so that reading the stats
	// holds up no user's next request.
	sort.Slice(pools, func(i, j int) bool { return pools[i].Identity < pools[j].Identity })
	for i := range pools {
		pools[i].Stats = byID[pools[i].Identity].Stats()
	}
	return pools
}

// Close stops every user's workers gracefully and waits for them, or for
// ctx.
func (u *UserPools) Close(ctx context.Context) error {
	u.mu.Lock()
	u.closed = true
	pools := u.pools
	u.pools = nil
	u.mu.Unlock()
	var errs []error
	for _, p := range pools {
		errs = append(errs, p.Close(ctx))
	}
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
