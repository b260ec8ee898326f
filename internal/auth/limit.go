package auth

import (
	"container/list"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxAddrs is how many client addresses a FailureLimiter tracks when
// MaxAddrs is 0.
const DefaultMaxAddrs = 10000

// FailureLimiter limits failed logins per client address with a token bucket:
// Burst failures at once, refilled at Rate per second. Rate or Burst 0
// disables it. IPv6 clients are counted per /64, the block one subscriber
// usually holds, so that walking through addresses of one's own block gains
// nothing. At most MaxAddrs addresses are tracked; the least recently seen is
// forgotten first (which forgives it: bounded memory is worth more than a
// perfect memory of old failures).
//
// Its fields are set before first use; its methods are safe for concurrent use.
type FailureLimiter struct {
	Rate     rate.Limit   // failures per second regained
	Burst    int          // failures allowed before throttling
	MaxAddrs int          // addresses tracked at once; 0: DefaultMaxAddrs
	Logger   *slog.Logger // one line per address per burst; nil: slog.Default()

	now func() time.Time // the clock; tests replace it

	mu    sync.Mutex
	addrs map[netip.Prefix]*list.Element // of *addrState
	lru   list.List                      // front: most recently seen
}

type addrState struct {
	key       netip.Prefix
	lim       *rate.Limiter
	inflight  int  // attempts begun and not yet ended, each holding a token
	throttled bool // logged since the address was last allowed a try
}

// attempt is one password check counted against an address. It holds a
// failure token from before the check until the outcome is known, so that
// concurrent guesses cannot all slip past a limit that only the first of them
// would have reached.
type attempt struct {
	f  *FailureLimiter
	st *addrState
}

func (f *FailureLimiter) enabled() bool {
	return f != nil && f.Rate > 0 && f.Burst > 0
}

func (f *FailureLimiter) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

// limitKey is the unit an address is counted in. Connections without an IP
// peer (a unix socket listener) share the zero key: counted together, never
// unlimited.
func limitKey(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// begin holds a failure token for addr while its password is checked. When
// none is free it returns throttled and how long until one is, and holds
// nothing: throttled attempts do not push the wait further out. Every attempt
// that is not throttled ends with succeeded or failed.
func (f *FailureLimiter) begin(addr netip.Addr) (a attempt, retryAfter time.Duration, throttled bool) {
	if !f.enabled() {
		return attempt{}, 0, false
	}
	now := f.clock()
	key := limitKey(addr)

	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stateLocked(key)
	if free := st.lim.TokensAt(now) - float64(st.inflight); free < 1 {
		wait := time.Duration(math.Ceil((1 - free) / float64(f.Rate) * float64(time.Second)))
		if !st.throttled {
			st.throttled = true
			logger := f.Logger
			if logger == nil {
				logger = slog.Default()
			}
			logger.Warn("login failures over the limit; answering 429 until the address is allowed again",
				"addr", keyString(key), "burst", f.Burst, "rate_per_second", float64(f.Rate), "retry_after", wait.Round(time.Second).String())
		}
		return attempt{}, wait, true
	}
	st.throttled = false
	st.inflight++
	return attempt{f: f, st: st}, 0, false
}

// succeeded ends an attempt without spending its token: a successful login
// never counts against its address.
func (a attempt) succeeded() {
	if a.st == nil {
		return
	}
	a.f.mu.Lock()
	a.st.inflight--
	a.f.mu.Unlock()
}

// failed ends an attempt by spending its token.
func (a attempt) failed() {
	if a.st == nil {
		return
	}
	a.f.mu.Lock()
	a.st.inflight--
	a.st.lim.AllowN(a.f.clock(), 1)
	a.f.mu.Unlock()
}

func (f *FailureLimiter) stateLocked(key netip.Prefix) *addrState {
	if f.addrs == nil {
		f.addrs = make(map[netip.Prefix]*list.Element)
	}
	if el, ok := f.addrs[key]; ok {
		f.lru.MoveToFront(el)
		return el.Value.(*addrState)
	}
	max := f.MaxAddrs
	if max <= 0 {
		max = DefaultMaxAddrs
	}
	for f.lru.Len() >= max {
		old := f.lru.Back()
		f.lru.Remove(old)
		delete(f.addrs, old.Value.(*addrState).key)
	}
	st := &addrState{key: key, lim: rate.NewLimiter(f.Rate, f.Burst)}
	f.addrs[key] = f.lru.PushFront(st)
	return st
}

func keyString(key netip.Prefix) string {
	if !key.IsValid() {
		return "non-IP peers"
	}
	return key.String()
}
