package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"

	"golang.org/x/time/rate"

	"github.com/suserve/suserve/internal/auth"
	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/identity"
)

// Identities builds the identity source [identities] describes, with the
// uid/gid policy applied on every lookup.
func Identities(cfg *config.Config, log *slog.Logger) (identity.Source, error) {
	policy := identity.Policy{UIDMin: cfg.Identities.UIDMin, GIDMin: cfg.Identities.GIDMin}
	switch cfg.Identities.Source {
	case "static":
		ids := make([]identity.Identity, 0, len(cfg.Identities.Static))
		for _, s := range cfg.Identities.Static {
			ids = append(ids, identity.Identity{Name: s.Name, UID: s.UID, GID: s.GID, Groups: s.Groups, Home: s.Home})
		}
		st, err := identity.NewStatic(ids)
		if err != nil {
			return nil, fmt.Errorf("[identities] static: %w", err)
		}
		return identity.Checked{Source: st, Policy: policy}, nil
	default:
		sys := &identity.System{Logger: log}
		if err := sys.Reload(); err != nil {
			return nil, fmt.Errorf("[identities] system: %w", err)
		}
		return identity.Checked{Source: sys, Policy: policy}, nil
	}
}

// authenticator is [auth]: Basic against htpasswd, a trusted proxy header,
// or none.
type authenticator struct {
	basic *auth.Basic
	proxy *auth.Proxy
	htpw  *auth.Htpasswd
}

func newAuthenticator(cfg *config.Config, log *slog.Logger) (*authenticator, error) {
	a := cfg.Auth
	switch a.Mode {
	case "basic":
		ttl := a.CacheTTL.D()
		if ttl == 0 || a.CacheSize == 0 {
			ttl = -1 // the cache is off
		}
		h := &auth.Htpasswd{Path: a.Htpasswd, CacheTTL: ttl, CacheSize: a.CacheSize, Logger: log}
		if err := h.Load(); err != nil {
			return nil, fmt.Errorf("[auth] htpasswd: %w", err)
		}
		var lim *auth.FailureLimiter
		if a.FailRate > 0 {
			lim = &auth.FailureLimiter{Rate: rate.Limit(a.FailRate), Burst: a.FailBurst, Logger: log}
		}
		return &authenticator{htpw: h, basic: &auth.Basic{Realm: a.Realm, Verifier: h, Limiter: lim}}, nil
	case "proxy":
		var trusted []netip.Prefix
		for _, s := range a.ProxyTrusted {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				addr, err2 := netip.ParseAddr(s)
				if err2 != nil {
					return nil, fmt.Errorf("[auth] proxy_trusted %q: %w", s, err)
				}
				p = netip.PrefixFrom(addr, addr.BitLen())
			}
			trusted = append(trusted, p)
		}
		return &authenticator{proxy: &auth.Proxy{Header: a.ProxyHeader, Trusted: trusted, AuthType: "Proxy", Logger: log}}, nil
	}
	return &authenticator{}, nil
}

// authenticate decides who is asking; anonymous says whether a request
// without credentials is admitted (with an empty user).
func (a *authenticator) authenticate(r *http.Request, anonymous bool) auth.Result {
	switch {
	case a.basic != nil:
		b := *a.basic
		b.Anonymous = anonymous
		return b.Authenticate(r)
	case a.proxy != nil:
		p := *a.proxy
		p.Anonymous = anonymous
		return p.Authenticate(r)
	}
	r.Header.Del("Authorization")
	r.Header.Del("Proxy-Authorization")
	if anonymous {
		return auth.Result{Admitted: true}
	}
	return auth.Result{Status: http.StatusForbidden}
}

// CheckRunAs refuses, before anything listens, routes that this process
// cannot serve: as an ordinary user only the server's own identity can run;
// as root, never the server's own identity (root).
func CheckRunAs(cfg *config.Config) error {
	var errs []error
	root := os.Geteuid() == 0
	for _, r := range cfg.Routes {
		where := fmt.Sprintf("%s: route %s (line %d)", displayFile(cfg.File), r.Path, r.Line)
		switch {
		case root && r.RunAs == config.RunAsSelf:
			errs = append(errs, fmt.Errorf("%s runs programs as the server's own user, and suserve runs as root: programs never run as root; use run_as = \"account\", \"authenticated\" or \"owner\"", where))
		case !root && r.RunAs != config.RunAsSelf:
			errs = append(errs, fmt.Errorf("%s runs programs as other users (run_as = %q), which needs suserve to start as root; it runs as %s", where, r.RunAs, SelfName()))
		}
	}
	for _, a := range cfg.Apps {
		if !root && a.RunAs != config.RunAsSelf {
			errs = append(errs, fmt.Errorf("%s: app %s (line %d) runs as other users (run_as = %q), which needs suserve to start as root; it runs as %s", displayFile(cfg.File), a.Path, a.Line, a.RunAs, SelfName()))
		}
	}
	return errors.Join(errs...)
}

func displayFile(f string) string {
	if f == "" {
		return "(embedded default)"
	}
	return f
}

// login authenticates r and puts who logged in into its record. When it
// returns false it has answered with the refusal (401, or 429 for the
// login rate limit) and recorded the cause. With anonymous, a request
// without credentials is admitted with the name "".
func (s *Server) login(w http.ResponseWriter, r *http.Request, anonymous bool) (name string, ok bool) {
	rec := cgi.RecordFrom(r.Context())
	res := s.auth.authenticate(r, anonymous)
	if !res.Admitted {
		if res.Status == http.StatusTooManyRequests {
			rec.Cause = "login rate limit"
		} else {
			rec.Cause = "not authenticated"
		}
		auth.WriteRefusal(w, res)
		return "", false
	}
	if res.User.Name != "" {
		rec.User, rec.AuthType = res.User.Name, res.User.AuthType
	}
	return res.User.Name, true
}

// who decides which identity runs the request's program on rt, and the
// route's directory for it. When it returns false it has answered.
func (s *Server) who(w http.ResponseWriter, r *http.Request, rt *route, user string) (id, dir string, ok bool) {
	rec := cgi.RecordFrom(r.Context())
	switch rt.cfg.RunAs {
	case config.RunAsSelf:
		return "", rt.cgi.Root, true
	case config.RunAsAccount:
		return rt.cfg.Account, rt.cgi.Root, true
	case config.RunAsAuthenticated:
		name, ok := s.login(w, r, rt.cfg.Anonymous != "")
		if !ok {
			return "", "", false
		}
		if name == "" {
			return rt.cfg.Anonymous, rt.cgi.Root, true
		}
		return name, rt.cgi.Root, true
	case config.RunAsOwner:
		r.Header.Del("Authorization")
		r.Header.Del("Proxy-Authorization")
		who, err := s.ids.Lookup(user)
		if err != nil {
			var pe *identity.PolicyError
			if errors.As(err, &pe) {
				rec.Cause = "refused by policy" // a class: the detail names the user
				s.log.Warn("owner route refused", "request_id", rec.ID, "user", user, "cause", pe.Error())
				http.Error(w, "403 Forbidden\nrequest id: "+rec.ID, http.StatusForbidden)
				return "", "", false
			}
			// An unknown ~user is a page that does not exist, as in Apache.
			rec.Cause = "unknown user"
			http.Error(w, "404 page not found", http.StatusNotFound)
			return "", "", false
		}
		if who.Home == "" && rt.usesHome {
			rec.Cause = "owner has no home directory"
			http.Error(w, "404 page not found", http.StatusNotFound)
			return "", "", false
		}
		return user, rt.cfg.ExpandDir(s.opts.StateDir, user, who.Home), true
	}
	return "", "", false
}
