package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// User is who a request was admitted as.
type User struct {
	Name     string // REMOTE_USER (RFC 3875 §4.1.11)
	AuthType string // AUTH_TYPE (RFC 3875 §4.1.1): "Basic", or Proxy.AuthType
}

type userKey struct{}

// WithUser returns ctx carrying u, as Basic and Proxy do for the handler they
// wrap.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the user a request was admitted as, or false for an
// anonymous request (or one that did not pass through Basic or Proxy).
func UserFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok && u.Name != ""
}

// Verifier checks a user's password. *Htpasswd is one.
type Verifier interface {
	// Verify reports whether password is user's password.
	Verify(user string, password []byte) bool
	// VerifyCached reports whether user and password were verified
	// recently, without checking a hash.
	VerifyCached(user string, password []byte) bool
}

// Result is what Authenticate decided about a request.
type Result struct {
	User     User // Name is "" for an anonymous request
	Admitted bool

	// When not admitted: the status to answer (401, 403, 429 or 400), the
	// WWW-Authenticate challenge for a 401 (RFC 9110 §11.6.1 requires one),
	// and for a 429 how long until another try is allowed (Retry-After,
	// RFC 6585 §4).
	Status     int
	Challenge  string
	RetryAfter time.Duration
}

// maxPasswordLen bounds the passwords checked. bcrypt reads 72 bytes at most,
// while apr1 hashes the whole password a thousand times: without a bound, a
// megabyte of header would be a megabyte of work, a thousand times, per try.
const maxPasswordLen = 512

// Basic admits requests carrying HTTP Basic credentials (RFC 7617) that
// Verifier accepts.
//
// Rate limiting and successful logins: once an address is over its failure
// limit, a password is no longer checked at all, only looked up in the cache
// of recently verified credentials; anything else gets 429. Checking every
// password and answering 429 only to wrong ones would keep answering the one
// question a guesser asks — is this the password? — at full speed, so the
// limit would stop nothing. A user who logged in recently from a throttled
// address (behind the same NAT as a guesser, say) keeps working; one who
// did not waits for Retry-After like anyone else. A successful login never
// spends the address's failure budget.
type Basic struct {
	Realm     string
	Verifier  Verifier
	Limiter   *FailureLimiter // failed logins per client address; nil: no limit
	Anonymous bool            // requests without credentials are admitted as anonymous instead of answered 401
}

// Authenticate decides about r and removes its Authorization and
// Proxy-Authorization headers, so that the credentials reach neither the
// program nor a log that records the request afterwards.
func (b *Basic) Authenticate(r *http.Request) Result {
	values := r.Header.Values("Authorization")
	r.Header.Del("Authorization")
	r.Header.Del("Proxy-Authorization")

	var creds string
	for _, v := range values {
		scheme, rest, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "Basic") { // auth-scheme is case-insensitive, RFC 9110 §11.1
			if creds != "" {
				return b.refuse() // two sets of credentials: which one is meant?
			}
			creds = strings.TrimLeft(rest, " ")
			if creds == "" {
				creds = "\x00" // present but empty: refused below
			}
		}
	}
	if creds == "" {
		// No Basic credentials (another scheme is not ours to judge).
		if b.Anonymous {
			return Result{Admitted: true}
		}
		return b.refuse()
	}

	a, retry, throttled := b.Limiter.begin(clientAddr(r))
	user, password, valid := decodeBasic(creds)
	if throttled {
		if valid && b.Verifier.VerifyCached(user, password) {
			return b.admit(user)
		}
		return Result{Status: http.StatusTooManyRequests, RetryAfter: retry}
	}
	if valid && b.Verifier.Verify(user, password) {
		a.succeeded()
		return b.admit(user)
	}
	// Malformed credentials count as failures too: anything presented and
	// not accepted is a try.
	a.failed()
	return b.refuse()
}

func (b *Basic) admit(user string) Result {
	return Result{Admitted: true, User: User{Name: user, AuthType: "Basic"}}
}

func (b *Basic) refuse() Result {
	return Result{Status: http.StatusUnauthorized, Challenge: b.challenge()}
}

// challenge is the WWW-Authenticate value: the realm as a quoted-string
// (RFC 9110 §5.6.4) and charset="UTF-8", which tells clients to send user
// and password in UTF-8 (RFC 7617 §2.1).
func (b *Basic) challenge() string {
	realm := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(b.Realm)
	return fmt.Sprintf(`Basic realm="%s", charset="UTF-8"`, realm)
}

// decodeBasic decodes token68 "user:password" (RFC 7617 §2). The user-id
// and password must not contain control characters, and the user-id no ':'.
func decodeBasic(creds string) (user string, password []byte, ok bool) {
	raw, err := base64.StdEncoding.DecodeString(creds)
	if err != nil {
		return "", nil, false
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found || CheckUserName(u) != nil || len(p) > maxPasswordLen || hasControlBytes(p) {
		return "", nil, false
	}
	return u, []byte(p), true
}

func hasControlBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// clientAddr is the address failures are counted against: the peer of the
// connection. Behind a reverse proxy that is the proxy; Proxy mode, where the
// proxy authenticates, has no passwords to guess.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Wrap admits requests as Authenticate decides: an admitted request reaches
// next with its user in the context (UserFrom) and without credential
// headers; any other gets a short plain-text page.
func (b *Basic) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := b.Authenticate(r)
		if !res.Admitted {
			WriteRefusal(w, res)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), res.User)))
	})
}

// WriteRefusal answers a request that res did not admit: the status, its
// challenge or Retry-After, and a one-line page that says nothing about users
// or files.
func WriteRefusal(w http.ResponseWriter, res Result) {
	h := w.Header()
	if res.Challenge != "" {
		h.Set("WWW-Authenticate", res.Challenge)
	}
	if res.Status == http.StatusTooManyRequests {
		secs := int64((res.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	status := res.Status
	if status == 0 {
		status = http.StatusForbidden
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s\n", status, http.StatusText(status))
}
