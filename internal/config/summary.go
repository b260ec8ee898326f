package config

import (
	"fmt"
	"strings"
)

// Summary is the effective configuration in words, every default filled
// in, for `suserve check`: what will listen where, who programs run as, and
// the cell arithmetic.
func (c *Config) Summary() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	src := c.File
	if src == "" {
		src = "(embedded default)"
	}
	p("configuration: %s", src)

	s := c.Server
	p("server:")
	p("  listen            %s", s.Listen)
	p("  admin_listen      %s", orWord(s.AdminListen, "disabled"))
	p("  user              %s (the unprivileged front, when started as root)", s.User)
	p("  state_dir         %s", orWord(s.StateDir, "a private temporary directory made at start"))
	p("  log_format        %s", s.LogFormat)
	if s.Diagnostics == "client" {
		p("  diagnostics       client (failure details are shown to clients)")
	} else {
		p("  diagnostics       log (failure details are logged, not shown to clients)")
	}
	p("  shutdown_timeout  %s", s.ShutdownTimeout)
	p("  server_name       %s", orWord(s.ServerName, "from the request's Host"))

	a := c.Auth
	p("auth:")
	switch a.Mode {
	case "basic":
		p("  mode              basic, realm %q, htpasswd %s", a.Realm, a.Htpasswd)
	case "proxy":
		p("  mode              proxy: header %s trusted from %s", a.ProxyHeader, strings.Join(a.ProxyTrusted, ", "))
	default:
		p("  mode              none (no request is authenticated)")
	}
	if a.Mode != "none" {
		if a.CacheTTL > 0 && a.CacheSize > 0 {
			p("  credential cache  %d entries for %s", a.CacheSize, a.CacheTTL)
		} else {
			p("  credential cache  off")
		}
		if a.FailRate > 0 {
			p("  failed logins     %g/s per client address, burst %d", a.FailRate, a.FailBurst)
		} else {
			p("  failed logins     not limited")
		}
	}

	id := c.Identities
	p("identities:")
	p("  source            %s, uid >= %d, gid >= %d (0 is always refused)", id.Source, id.UIDMin, id.GIDMin)
	for _, s := range id.Static {
		p("  static            %s uid %d gid %d groups %v home %s", s.Name, s.UID, s.GID, s.Groups, orWord(s.Home, "(none)"))
	}

	cl := c.Cells
	p("cells:")
	p("  backend           %s, subtree %q", cl.Backend, cl.Root)
	p("  capacity          budget %s / cell_memory %s = %d cells", cl.Budget, cl.CellMemory, cl.Capacity())
	if rest := cl.Budget - Size(cl.Capacity())*cl.CellMemory; rest > 0 {
		p("                    (%s of the budget is left over: not enough for another cell)", rest)
	}
	p("  per cell          memory %s, pids %d, cpu weight %d, %s", cl.CellMemory, cl.CellPids, cl.CellCPUWeight, maxRequests(cl.CellMaxRequests))
	p("  idle_evict        %s", durationOr(cl.IdleEvict, "never (cells are evicted only to make room)"))
	p("  queue_timeout     %s", durationOr(cl.QueueTimeout, "0 (refuse at once when the budget is full)"))

	g := c.CGI
	p("cgi:")
	p("  header_timeout    %s", g.HeaderTimeout)
	p("  idle_timeout      %s", g.IdleTimeout)
	p("  max_request_body  %s", g.MaxRequestBody)
	if len(g.PassEnv) > 0 {
		p("  pass_env          %s", strings.Join(g.PassEnv, ", "))
	}
	p("  document_root     %s", orWord(g.DocumentRoot, "the route's dir"))

	if len(c.Routes) == 0 && len(c.Apps) == 0 {
		p("routes:            none")
	}
	for _, r := range c.Routes {
		p("route %s", r.Path)
		p("  dir               %s", r.Dir)
		switch r.RunAs {
		case RunAsSelf:
			p("  runs as           the server's own user")
		case RunAsAuthenticated:
			if r.Anonymous != "" {
				p("  runs as           the authenticated user; unauthenticated requests as %s", r.Anonymous)
			} else {
				p("  runs as           the authenticated user; unauthenticated requests get 401")
			}
		case RunAsOwner:
			p("  runs as           the user named in the path ({user})")
		case RunAsAccount:
			p("  runs as           %s", r.Account)
		}
	}
	for _, ap := range c.Apps {
		p("app %s", ap.Path)
		p("  protocol          %s", ap.Protocol)
		p("  command           %s", strings.Join(ap.Command, " "))
		if ap.Dir != "" {
			p("  dir               %s", ap.Dir)
		}
		if ap.RunAs == RunAsAccount {
			p("  runs as           %s", ap.Account)
		} else {
			p("  runs as           the authenticated user (a pool per user)")
		}
		p("  workers           %d per pool, %d requests each at once, queue %d, start_timeout %s, idle_stop %s", ap.Workers, ap.Concurrency, ap.MaxQueue, ap.StartTimeout, durationOr(ap.IdleStop, "never"))
	}
	return b.String()
}

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}

func durationOr(d Duration, word string) string {
	if d == 0 {
		return word
	}
	return d.String()
}

func maxRequests(n int) string {
	if n == 0 {
		return "no limit on concurrent requests"
	}
	return fmt.Sprintf("at most %d concurrent requests", n)
}
