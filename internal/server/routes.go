package server

import (
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/suserve/suserve/internal/cgi"
	"github.com/suserve/suserve/internal/config"
)

// route is one [[route]] ready to serve.
type route struct {
	cfg      config.Route
	owner    bool // the path names the user: /~{user}/...
	usesHome bool // dir contains {home}
	cgi      cgi.Handler
}

// router dispatches to the route with the longest matching prefix.
type router struct {
	s      *Server
	routes []*route
	apps   []*appRoute  // longest prefix first
	front  http.Handler // "/" when nothing else matches; nil = 404
}

func (s *Server) routes() (*router, error) {
	rt := &router{s: s, apps: s.appRoutes}
	for _, r := range s.cfg.Routes {
		x := &route{
			cfg:      r,
			owner:    r.RunAs == config.RunAsOwner,
			usesHome: strings.Contains(r.Dir, config.PlaceholderHome),
		}
		x.cgi = cgi.Handler{
			Launcher:       s.launcherFor(r.RunAs),
			Route:          r.Path,
			Root:           r.ExpandDir(s.opts.StateDir, "", ""),
			PassEnv:        s.cfg.CGI.PassEnv,
			HeaderTimeout:  s.cfg.CGI.HeaderTimeout.D(),
			IdleTimeout:    s.cfg.CGI.IdleTimeout.D(),
			MaxRequestBody: s.cfg.CGI.MaxRequestBody.Bytes(),
			Diagnostics:    s.cfg.Server.Diagnostics == "client",
			ServerSoftware: Software(),
			Logger:         s.log,
		}
		if d := s.cfg.CGI.DocumentRoot; d != "" {
			x.cgi.DocumentRoot = strings.ReplaceAll(d, config.PlaceholderState, s.opts.StateDir)
		}
		rt.routes = append(rt.routes, x)
	}
	// Longest prefix first, so /cgi-bin/admin/ wins over /cgi-bin/.
	slices.SortStableFunc(rt.routes, func(a, b *route) int { return len(b.cfg.Path) - len(a.cfg.Path) })
	if s.opts.Demo != nil {
		rt.front = s.opts.Demo.frontPage(s)
	}
	for i := range rt.routes {
		rt.routes[i].cgi.Dispatch = rt
	}
	return rt, nil
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	ap := rt.appFor(p)
	for _, x := range rt.routes {
		user, prefix, _, ok := x.cfg.Match(p)
		if !ok {
			continue
		}
		if ap != nil && len(ap.cfg.Path) > len(prefix) {
			break // the app's prefix is the longer one
		}
		id, dir, ok := rt.s.who(w, r, x, user)
		if !ok {
			return
		}
		h := x.cgi // a copy: Identity, Root and Route are this request's
		h.Identity, h.Root, h.Route = id, dir, prefix
		if x.owner && h.DocumentRoot == "" {
			h.DocumentRoot = dir
		}
		h.ServeHTTP(w, r)
		return
	}
	if ap != nil {
		ap.serve(rt.s, w, r)
		return
	}
	if rt.front != nil && (p == "/" || p == "/index.html") {
		rt.front.ServeHTTP(w, r)
		return
	}
	// A route's path without its trailing slash gets one, as a directory would.
	for _, x := range rt.routes {
		if !x.owner && p+"/" == x.cfg.Path {
			http.Redirect(w, r, path.Clean(p)+"/", http.StatusMovedPermanently)
			return
		}
	}
	for _, a := range rt.apps {
		if p+"/" == a.cfg.Path {
			http.Redirect(w, r, path.Clean(p)+"/", http.StatusMovedPermanently)
			return
		}
	}
	http.NotFound(w, r)
}
