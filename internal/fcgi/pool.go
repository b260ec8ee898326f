package fcgi

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
)

// Pool sends requests to one worker over kept-alive connections
// (FCGI_KEEP_CONN, §5.1), holding a few idle ones for the next request. A
// connection that saw any error, an abort, or a response the worker ended
// before reading all its input is closed rather than reused.
type Pool struct {
	// Dial opens a new connection to the worker.
	Dial func(ctx context.Context) (net.Conn, error)
	// MaxIdle is how many idle connections are kept; 0 means 2.
	MaxIdle int

	mu     sync.Mutex
	idle   []*Conn // most recently used last
	closed bool
	stats  PoolStats
}

// PoolStats counts a pool's connections, for the status page.
type PoolStats struct {
	Idle      int    // connections waiting for a request now
	Dialed    uint64 // connections opened
	Reused    uint64 // requests sent over a kept connection
	Discarded uint64 // connections closed after an error or abort
}

// NewPool returns a pool of connections to the worker listening at
// address on network ("unix" for suserve's workers).
func NewPool(network, address string, maxIdle int) *Pool {
	return &Pool{
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		},
		MaxIdle: maxIdle,
	}
}

// Do sends req over an idle connection, or a new one, with KeepConn set.
// A kept connection can die while idle (the worker restarted, or closed it
// after its last request, as php-cgi does after PHP_FCGI_MAX_REQUESTS)
// without the pool seeing it in time. Do then sends the request again on a
// new connection, once, when that is safe: the request could not be
// written, or it has no body and an idempotent method (RFC 9110 §9.2.2) and
// the worker said nothing before the connection ended, the rule nginx
// follows for its upstreams.
func (p *Pool) Do(ctx context.Context, req *Request) (*Response, error) {
	kept := *req
	kept.KeepConn = true
	c, reused, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(ctx, &kept)
	var ce *ConnError
	if err != nil && reused && ctx.Err() == nil && errors.As(err, &ce) && ce.Op == "write" {
		if c, err = p.dial(ctx); err != nil {
			return nil, err
		}
		return c.Do(ctx, &kept)
	}
	if err == nil && reused && kept.Stdin == nil && idempotent(kept.Params) {
		resp.redo = func() (*Response, error) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			c, err := p.dial(ctx)
			if err != nil {
				return nil, err
			}
			return c.Do(ctx, &kept)
		}
	}
	return resp, err
}

func idempotent(params []Param) bool {
	for _, p := range params {
		if p.Name == "REQUEST_METHOD" {
			switch p.Value {
			case "GET", "HEAD", "OPTIONS", "TRACE":
				return true
			}
			return false
		}
	}
	return false
}

// Values sends GET_VALUES (§4.1) over a new connection, which it then
// closes: the readiness probe of a freshly started worker. The connection
// is not kept because Go's net/http/fcgi follows its answer with an empty
// record that would make the connection look unsound when next used.
func (p *Pool) Values(ctx context.Context, names ...string) (map[string]string, error) {
	c, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	c.release = nil
	defer c.Close()
	return c.Values(ctx, names...)
}

// get returns an idle connection that is still open, or a new one.
func (p *Pool) get(ctx context.Context) (c *Conn, reused bool, err error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, false, ErrPoolClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			c, err := p.dial(ctx)
			return c, false, err
		}
		c = p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		// Bytes the worker sent after its last END_REQUEST, whether
		// still in the socket or already buffered, would be read as
		// the next response: such a connection is not reused.
		if c.rd.br.Buffered() == 0 && idleConnAlive(c.nc) {
			p.mu.Lock()
			p.stats.Reused++
			p.mu.Unlock()
			return c, true, nil
		}
		p.discard(c)
	}
}

func (p *Pool) dial(ctx context.Context) (*Conn, error) {
	nc, err := p.Dial(ctx)
	if err != nil {
		return nil, &ConnError{Op: "dial", Err: err}
	}
	p.mu.Lock()
	p.stats.Dialed++
	p.mu.Unlock()
	c := NewConn(nc)
	c.release = p.put
	return c, nil
}

// put takes a connection back when its request is over.
func (p *Pool) put(c *Conn, reusable bool) {
	if !reusable {
		p.mu.Lock()
		p.stats.Discarded++
		p.mu.Unlock()
		return // done has closed it
	}
	p.mu.Lock()
	max := p.MaxIdle
	if max <= 0 {
		max = 2
	}
	if !p.closed && len(p.idle) < max {
		p.idle = append(p.idle, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	c.Close()
}

func (p *Pool) discard(c *Conn) {
	c.Close()
	p.mu.Lock()
	p.stats.Discarded++
	p.mu.Unlock()
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Idle = len(p.idle)
	return s
}

// CloseIdle closes the idle connections, as when a worker is stopped.
func (p *Pool) CloseIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// Close closes the idle connections and makes later Do calls fail with
// ErrPoolClosed; responses in progress finish, and their connections are
// then closed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.CloseIdle()
	return nil
}

// idleConnAlive reports whether an idle connection is still open and has
// nothing to read: a worker that closed it has sent EOF, and one that sent
// bytes outside any request has broken the protocol. It peeks without
// blocking, one system call.
func idleConnAlive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true // the first write or read will tell
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}
