package auth

import (
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
)

// Proxy admits requests as the user a trusted reverse proxy names in Header.
// The header is honoured only when the connection comes from an address in
// Trusted; it is removed from every request, trusted or not, so that no
// program sees a value it might take for the proxy's word. Header names are
// matched with '-' and '_' as equal, since CGI folds both to '_'
// (RFC 3875 §4.1.18): "X_Remote_User" from a client would otherwise reach a
// program as HTTP_X_REMOTE_USER.
type Proxy struct {
	Header    string         // e.g. "X-Remote-User"
	Trusted   []netip.Prefix // the proxy's addresses
	AuthType  string         // AUTH_TYPE of admitted requests, e.g. "Basic" if the proxy checks Basic
	Anonymous bool           // requests without a user are admitted as anonymous instead of answered 403
	Logger    *slog.Logger   // bad values from a trusted proxy; nil: slog.Default()
}

// Authenticate decides about r and removes the header (and any
// Authorization header) from it.
func (p *Proxy) Authenticate(r *http.Request) Result {
	values := p.strip(r.Header)
	r.Header.Del("Authorization")
	r.Header.Del("Proxy-Authorization")

	if !p.trusted(r) || len(values) == 0 {
		if p.Anonymous {
			return Result{Admitted: true}
		}
		// No challenge can be offered (the proxy authenticates), so not 401.
		return Result{Status: http.StatusForbidden}
	}
	if len(values) > 1 {
		p.logger().Warn("trusted proxy sent the user header more than once; refused", "header", p.Header, "remote", r.RemoteAddr)
		return Result{Status: http.StatusBadRequest}
	}
	if err := CheckUserName(values[0]); err != nil {
		p.logger().Warn("trusted proxy sent an unusable user name; refused", "header", p.Header, "remote", r.RemoteAddr, "err", err)
		return Result{Status: http.StatusBadRequest}
	}
	return Result{Admitted: true, User: User{Name: values[0], AuthType: p.AuthType}}
}

// Wrap admits requests as Authenticate decides; see Basic.Wrap.
func (p *Proxy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := p.Authenticate(r)
		if !res.Admitted {
			WriteRefusal(w, res)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithUser(r.Context(), res.User)))
	})
}

// strip removes every spelling of the header and returns the values of the
// exact one. Values under a '_' spelling are never honoured: a proxy that
// sets the header uses its real name.
func (p *Proxy) strip(h http.Header) []string {
	values := h.Values(p.Header)
	want := fold(p.Header)
	for k := range h {
		if fold(k) == want {
			delete(h, k)
		}
	}
	return values
}

func fold(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

func (p *Proxy) trusted(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, pfx := range p.Trusted {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}
