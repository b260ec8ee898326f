package auth

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// credCache remembers credentials that were verified recently, so a busy user
// pays for bcrypt once per TTL instead of once per request. It stores a keyed
// SHA-256 (HMAC with a per-process random key) of user and password, never
// the password: a memory dump yields nothing that logs in elsewhere, and the
// key differs in every process. Entries are evicted least recently used first
// when the cache is full. It is not safe for concurrent use; Htpasswd locks.
type credCache struct {
	key   [32]byte
	ttl   time.Duration
	max   int
	users map[string]*list.Element // of *credEntry
	lru   list.List                // front: most recently used
}

type credEntry struct {
	user    string
	sum     [sha256.Size]byte
	expires time.Time
}

func newCredCache(key [32]byte, ttl time.Duration, max int) *credCache {
	return &credCache{key: key, ttl: ttl, max: max, users: make(map[string]*list.Element)}
}

// sum binds user and password together (length-prefixed, so no two pairs
// share an input) under the process's key.
func (c *credCache) sum(user string, password []byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, c.key[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(user)))
	m.Write(n[:])
	m.Write([]byte(user))
	m.Write(password)
	var s [sha256.Size]byte
	m.Sum(s[:0])
	return s
}

// hit reports whether sum was verified for user less than TTL ago.
func (c *credCache) hit(user string, sum [sha256.Size]byte, now time.Time) bool {
	el, ok := c.users[user]
	if !ok {
		return false
	}
	e := el.Value.(*credEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.users, user)
		return false
	}
	if !hmac.Equal(e.sum[:], sum[:]) {
		return false
	}
	c.lru.MoveToFront(el)
	return true
}

// put records a verified credential. The TTL runs from verification and is
// not extended by hits, so a credential is re-checked against the file at
// least once per TTL even when the file's change went unnoticed.
func (c *credCache) put(user string, sum [sha256.Size]byte, now time.Time) {
	if c.max <= 0 || c.ttl <= 0 {
		return
	}
	e := &credEntry{user: user, sum: sum, expires: now.Add(c.ttl)}
	if el, ok := c.users[user]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.users, old.Value.(*credEntry).user)
	}
	c.users[user] = c.lru.PushFront(e)
}

func (c *credCache) len() int { return c.lru.Len() }
