package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
)

// validate checks what the types cannot: enumerations, ranges, paths, and
// the rules that tie keys together. Every rule reports through c, so that
// one run names every problem.
func validate(cfg *Config, c *collector) {
	validateServer(&cfg.Server, c)
	validateAuth(&cfg.Auth, c)
	validateIdentities(&cfg.Identities, c)
	validateCells(&cfg.Cells, c)
	validateCGI(&cfg.CGI, c)
	validateRoutes(cfg, c)
	validateApps(cfg, c)
	validatePaths(cfg, c)
}

func oneOf(c *collector, key, v string, allowed ...string) bool {
	if slices.Contains(allowed, v) {
		return true
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	c.add(key, "%q is not one of %s", v, strings.Join(quoted, ", "))
	return false
}

// checkAddr checks a listen address: host:port with a numeric port.
func checkAddr(c *collector, key, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.add(key, "%q is not host:port (e.g. \"127.0.0.1:8080\" or \":8080\")", addr)
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		c.add(key, "%q: port %q is not a number from 0 to 65535", addr, port)
		return false
	}
	if host != "" && strings.ContainsAny(host, " \t/") {
		c.add(key, "%q: host %q is not a host name or address", addr, host)
		return false
	}
	return true
}

func checkAbs(c *collector, key, p string) bool {
	if !path.IsAbs(p) {
		c.add(key, "%q is not an absolute path", p)
		return false
	}
	if hasDotDot(p) {
		c.add(key, "%q contains \"..\"", p)
		return false
	}
	return true
}

func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

func validateServer(s *Server, c *collector) {
	if s.Listen == "" {
		c.add("server.listen", "must not be empty")
	} else {
		checkAddr(c, "server.listen", s.Listen)
	}
	if s.AdminListen != "" && checkAddr(c, "server.admin_listen", s.AdminListen) {
		if s.AdminListen == s.Listen && !strings.HasSuffix(s.Listen, ":0") {
			c.add("server.admin_listen", "%q is also server.listen; use another port, or \"\" to disable", s.AdminListen)
		}
	}
	if !ValidUserName(s.User) {
		c.add("server.user", "%q is not a valid user name", s.User)
	}
	if s.StateDir != "" {
		checkAbs(c, "server.state_dir", s.StateDir)
	}
	oneOf(c, "server.log_format", s.LogFormat, "text", "json")
	oneOf(c, "server.diagnostics", s.Diagnostics, "log", "client")
	if s.ServerName != "" && !validHost(s.ServerName) {
		c.add("server.server_name", "%q is not a host name", s.ServerName)
	}
}

// validHost accepts host names and IP literals as SERVER_NAME (RFC 3875
// §4.1.14), without a port.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func validateAuth(a *Auth, c *collector) {
	oneOf(c, "auth.mode", a.Mode, "none", "basic", "proxy")
	if a.Realm == "" {
		c.add("auth.realm", "must not be empty")
	} else if strings.ContainsFunc(a.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\\' }) {
		// The realm is sent as a quoted-string (RFC 7617 §2); keeping
		// quotes, backslashes and controls out means it never needs escaping.
		c.add("auth.realm", "%q contains a quote, backslash or control character", a.Realm)
	}
	switch {
	case a.Mode == "basic" && a.Htpasswd == "":
		c.add("auth.htpasswd", "is required with mode = \"basic\"")
	case a.Mode == "basic":
		checkAbs(c, "auth.htpasswd", a.Htpasswd)
	case a.Htpasswd != "":
		c.add("auth.htpasswd", "is used only with mode = \"basic\", and mode is %q", a.Mode)
	}
	if a.Mode == "proxy" {
		if a.ProxyHeader == "" {
			c.add("auth.proxy_header", "is required with mode = \"proxy\"")
		} else if !validToken(a.ProxyHeader) {
			c.add("auth.proxy_header", "%q is not a header name", a.ProxyHeader)
		} else if h := strings.ToLower(a.ProxyHeader); h == "authorization" || h == "host" || h == "cookie" || h == "content-length" {
			c.add("auth.proxy_header", "%q carries something else; use a dedicated header such as \"X-Remote-User\"", a.ProxyHeader)
		}
		if len(a.ProxyTrusted) == 0 {
			c.add("auth.proxy_trusted", "is required with mode = \"proxy\": the addresses of the proxies whose header is believed")
		}
		for _, s := range a.ProxyTrusted {
			if _, err := ParsePrefix(s); err != nil {
				c.add("auth.proxy_trusted", "%q is not an address or CIDR prefix", s)
				break
			}
		}
	} else {
		if a.ProxyHeader != "" {
			c.add("auth.proxy_header", "is used only with mode = \"proxy\", and mode is %q", a.Mode)
		}
		if len(a.ProxyTrusted) > 0 {
			c.add("auth.proxy_trusted", "is used only with mode = \"proxy\", and mode is %q", a.Mode)
		}
	}
	if a.CacheSize < 0 {
		c.add("auth.cache_size", "%d is negative", a.CacheSize)
	}
	if math.IsNaN(a.FailRate) || math.IsInf(a.FailRate, 0) || a.FailRate < 0 {
		c.add("auth.fail_rate", "%v is not a rate; use failed logins per second, or 0 to disable limiting", a.FailRate)
	}
	if a.FailBurst < 0 {
		c.add("auth.fail_burst", "%d is negative", a.FailBurst)
	} else if a.FailRate > 0 && a.FailBurst == 0 {
		c.add("auth.fail_burst", "must be at least 1 when fail_rate is set (0 would refuse every failed login, including the first)")
	}
}

// ParsePrefix parses a proxy_trusted entry: a CIDR prefix, or a single
// address meaning a prefix of full length.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// TrustedProxies returns proxy_trusted as prefixes. It is valid after Parse.
func (a Auth) TrustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range a.ProxyTrusted {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// validToken reports whether s is an HTTP token (RFC 9110 §5.6.2), as a
// header name must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// ValidUserName reports whether s can name an identity: 1 to 32 of
// [A-Za-z0-9._-], not starting with '-' or '.'. The rule keeps names safe in
// paths ({user} in dir), URLs and log lines.
func ValidUserName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// invalidID is (uid_t)-1, which setresuid and chown read as "no change".
const invalidID = math.MaxUint32

func validateIdentities(ids *Identities, c *collector) {
	oneOf(c, "identities.source", ids.Source, "system", "static")
	if ids.UIDMin == 0 {
		c.add("identities.uid_min", "must be at least 1: uid 0 is root")
	}
	if ids.GIDMin == 0 {
		c.add("identities.gid_min", "must be at least 1: gid 0 is root's group")
	}
	switch {
	case ids.Source == "static" && len(ids.Static) == 0:
		c.add("identities.source", "is \"static\" but there is no [[identities.static]] entry")
	case ids.Source == "system" && len(ids.Static) > 0:
		c.add("identities.static[0]", "[[identities.static]] is used only with source = \"static\", and source is \"system\"")
	}
	seen := map[string]int{}
	for i, s := range ids.Static {
		k := fmt.Sprintf("identities.static[%d]", i)
		if !c.idx.has(k + ".name") {
			c.add(k+".name", "is required")
		} else if !ValidUserName(s.Name) {
			c.add(k+".name", "%q is not a valid user name", s.Name)
		} else if first, dup := seen[s.Name]; dup {
			c.add(k+".name", "%q is already defined at line %d", s.Name, c.idx.lineOf(fmt.Sprintf("identities.static[%d]", first)))
		} else {
			seen[s.Name] = i
		}
		checkID(c, k+".uid", "uid", s.UID, ids.UIDMin, "uid_min")
		checkID(c, k+".gid", "gid", s.GID, ids.GIDMin, "gid_min")
		for _, g := range s.Groups {
			if g == 0 || g == invalidID {
				c.add(k+".groups", "group %d is not allowed: gid 0 is root's group", g)
				break
			}
		}
		if s.Home != "" {
			checkAbs(c, k+".home", s.Home)
		}
	}
}

func checkID(c *collector, key, what string, id, min uint32, minKey string) {
	switch {
	case !c.idx.has(key):
		c.add(key, "is required")
	case id == 0:
		c.add(key, "%s 0 is root; programs never run as root", what)
	case id == invalidID:
		c.add(key, "%d is not a valid %s", id, what)
	case id < min:
		c.add(key, "%s %d is below identities.%s (%d)", what, id, minKey, min)
	}
}

// validCgroupName checks [cells] root: a relative path of plain names, so
// that suserve never reaches outside its own cgroup.
func validCgroupName(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, "cgroup.") {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return false
			}
		}
	}
	return true
}

// MinCellMemory is the smallest cell_memory accepted: below it not even a
// shell starts, and every request would end in an OOM kill.
const MinCellMemory = 4 * MiB

func validateCells(cl *Cells, c *collector) {
	oneOf(c, "cells.backend", cl.Backend, "auto", "cgroup2", "cgroup1", "none")
	if !validCgroupName(cl.Root) {
		c.add("cells.root", "%q is not a relative cgroup name (letters, digits, '.', '_', '-', separated by '/')", cl.Root)
	}
	if cl.CellMemory < MinCellMemory {
		c.add("cells.cell_memory", "%s is below the minimum of %s", cl.CellMemory, MinCellMemory)
	} else if cl.Budget < cl.CellMemory {
		c.add("cells.budget", "budget %s is smaller than cell_memory %s: not even one cell fits", cl.Budget, cl.CellMemory)
	}
	if cl.CellPids < 1 {
		c.add("cells.cell_pids", "%d: a cell needs at least 1 process", cl.CellPids)
	}
	if cl.CellCPUWeight < 1 || cl.CellCPUWeight > 10000 {
		c.add("cells.cell_cpu_weight", "%d is outside 1..10000 (cgroup v2 cpu.weight)", cl.CellCPUWeight)
	}
	if cl.CellMaxRequests < 0 {
		c.add("cells.cell_max_requests", "%d is negative; use 0 for no limit", cl.CellMaxRequests)
	}
}

// cgiMetaVariables are the names the gateway sets (RFC 3875 §4.1); pass_env
// must not overwrite them.
var cgiMetaVariables = []string{
	"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "GATEWAY_INTERFACE", "PATH_INFO",
	"PATH_TRANSLATED", "QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT",
	"REMOTE_PORT", "REMOTE_USER", "REQUEST_METHOD", "SCRIPT_NAME", "SCRIPT_FILENAME",
	"SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE", "REQUEST_URI",
	"DOCUMENT_ROOT", "HTTPS", "PATH", "HOME", "USER", "LOGNAME",
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func validateCGI(g *CGI, c *collector) {
	if g.HeaderTimeout <= 0 {
		c.add("cgi.header_timeout", "must be more than 0")
	}
	if g.IdleTimeout <= 0 {
		c.add("cgi.idle_timeout", "must be more than 0")
	}
	if g.MaxRequestBody <= 0 {
		c.add("cgi.max_request_body", "must be more than 0")
	}
	for _, name := range g.PassEnv {
		switch {
		case !validEnvName(name):
			c.add("cgi.pass_env", "%q is not an environment variable name", name)
		case strings.HasPrefix(strings.ToUpper(name), "HTTP_"):
			// HTTP_* carry request headers; a server variable under such a
			// name would impersonate one (the httpoxy problem, HTTP_PROXY).
			c.add("cgi.pass_env", "%q: HTTP_* names are request headers and cannot be passed from the server", name)
		case slices.Contains(cgiMetaVariables, strings.ToUpper(name)):
			c.add("cgi.pass_env", "%q is set by suserve for each request and cannot be passed", name)
		}
	}
	if g.DocumentRoot != "" {
		checkDir(c, "cgi.document_root", g.DocumentRoot, false)
	}
}

// Placeholders in [[route]] and [[app]] values.
const (
	PlaceholderUser  = "{user}"
	PlaceholderHome  = "{home}"
	PlaceholderState = "{state}"
)

// checkDir checks a directory that may use placeholders: {state} anywhere,
// {user} and {home} only when owner is true; absolute once expanded.
func checkDir(c *collector, key, dir string, owner bool) {
	rest := dir
	for _, ph := range []string{PlaceholderState, PlaceholderUser, PlaceholderHome} {
		if strings.Contains(rest, ph) && ph != PlaceholderState && !owner {
			c.add(key, "%q: %s is allowed only with run_as = \"owner\"", dir, ph)
			return
		}
		rest = strings.ReplaceAll(rest, ph, "x")
	}
	if strings.ContainsAny(rest, "{}") {
		c.add(key, "%q: unknown placeholder; known are {state}, and {user} and {home} with run_as = \"owner\"", dir)
		return
	}
	if !strings.HasPrefix(dir, "/") && !strings.HasPrefix(dir, PlaceholderState) && !strings.HasPrefix(dir, PlaceholderHome) {
		c.add(key, "%q is not an absolute path (or one starting with {state} or {home})", dir)
		return
	}
	if strings.HasPrefix(dir, PlaceholderHome) && !owner {
		return // reported above
	}
	if hasDotDot(dir) {
		c.add(key, "%q contains \"..\"", dir)
	}
}

// checkURLPath checks a route or app path: starts and ends with "/", clean,
// with {user} exactly once when owner is true and never otherwise.
func checkURLPath(c *collector, key, p string, owner bool) {
	if p == "" {
		c.add(key, "is required")
		return
	}
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		c.add(key, "%q must start and end with \"/\"", p)
		return
	}
	if p != "/" && path.Clean(p)+"/" != p {
		c.add(key, "%q is not a clean path (no \"//\", \".\" or \"..\" segments)", p)
		return
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '?' || r == '#' || r == '%' || r == '\\' }) {
		c.add(key, "%q contains a space, control character, '?', '#', '%%' or '\\'", p)
		return
	}
	n := strings.Count(p, PlaceholderUser)
	if strings.ContainsAny(strings.ReplaceAll(p, PlaceholderUser, ""), "{}") {
		c.add(key, "%q: the only placeholder in a path is {user}", p)
		return
	}
	switch {
	case owner && n != 1:
		c.add(key, "%q: a route with run_as = \"owner\" has {user} exactly once in its path, e.g. \"/~{user}/cgi-bin/\"", p)
	case !owner && n > 0:
		c.add(key, "%q: {user} in a path is allowed only with run_as = \"owner\"", p)
	}
}

// checkIdentityName checks an account or anonymous identity and, with a
// static table, that the table has it.
func checkIdentityName(cfg *Config, c *collector, key, name string) {
	if !ValidUserName(name) {
		c.add(key, "%q is not a valid user name", name)
		return
	}
	if cfg.Identities.Source != "static" {
		return // system accounts are resolved at start, not here
	}
	for _, s := range cfg.Identities.Static {
		if s.Name == name {
			return
		}
	}
	c.add(key, "%q is not in [[identities.static]]", name)
}

func validateRoutes(cfg *Config, c *collector) {
	for i, r := range cfg.Routes {
		k := fmt.Sprintf("route[%d]", i)
		okMode := oneOf(c, k+".run_as", r.RunAs, RunAsSelf, RunAsAuthenticated, RunAsOwner, RunAsAccount)
		owner := r.RunAs == RunAsOwner
		checkURLPath(c, k+".path", r.Path, owner && okMode)
		if r.Dir == "" {
			c.add(k+".dir", "is required")
		} else {
			checkDir(c, k+".dir", r.Dir, owner)
		}
		if r.RunAs == RunAsAuthenticated && cfg.Auth.Mode == "none" {
			c.add(k+".run_as", "\"authenticated\" needs [auth] mode = \"basic\" or \"proxy\"; auth.mode is \"none\"")
		}
		if r.Anonymous != "" {
			if r.RunAs != RunAsAuthenticated {
				c.add(k+".anonymous", "is used only with run_as = \"authenticated\"")
			} else {
				checkIdentityName(cfg, c, k+".anonymous", r.Anonymous)
			}
		}
		checkAccount(cfg, c, k, r.RunAs, r.Account, okMode)
	}
}

func checkAccount(cfg *Config, c *collector, k, runAs, account string, okMode bool) {
	switch {
	case runAs == RunAsAccount && account == "":
		c.add(k+".account", "is required with run_as = \"account\"")
	case runAs == RunAsAccount:
		checkIdentityName(cfg, c, k+".account", account)
	case account != "" && okMode:
		c.add(k+".account", "is used only with run_as = \"account\", and run_as is %q", runAs)
	}
}

// MaxAppWorkers bounds workers per pool, MaxAppConcurrency the requests
// one worker is given at once.
const (
	MaxAppWorkers     = 64
	MaxAppConcurrency = 1024
)

func validateApps(cfg *Config, c *collector) {
	for i, a := range cfg.Apps {
		k := fmt.Sprintf("app[%d]", i)
		checkURLPath(c, k+".path", a.Path, false)
		if a.Protocol == "" {
			c.add(k+".protocol", "is required: \"fastcgi\" or \"http\"")
		} else {
			oneOf(c, k+".protocol", a.Protocol, ProtocolFastCGI, ProtocolHTTP)
		}
		if a.Dir != "" {
			checkDir(c, k+".dir", a.Dir, false)
		}
		switch {
		case len(a.Command) == 0:
			c.add(k+".command", "is required: the program and its arguments, e.g. [\"/usr/bin/php-cgi\"]")
		case !path.IsAbs(a.Command[0]):
			c.add(k+".command", "program %q is not an absolute path", a.Command[0])
		}
		okMode := oneOf(c, k+".run_as", a.RunAs, RunAsAccount, RunAsAuthenticated)
		if a.RunAs == RunAsAuthenticated && cfg.Auth.Mode == "none" {
			c.add(k+".run_as", "\"authenticated\" needs [auth] mode = \"basic\" or \"proxy\"; auth.mode is \"none\"")
		}
		checkAccount(cfg, c, k, a.RunAs, a.Account, okMode)
		if a.Workers < 1 || a.Workers > MaxAppWorkers {
			c.add(k+".workers", "%d is outside 1..%d", a.Workers, MaxAppWorkers)
		}
		if a.Concurrency < 1 || a.Concurrency > MaxAppConcurrency {
			c.add(k+".concurrency", "%d is outside 1..%d", a.Concurrency, MaxAppConcurrency)
		}
		if a.StartTimeout <= 0 {
			c.add(k+".start_timeout", "must be more than 0")
		}
		if a.MaxQueue < 0 {
			c.add(k+".max_queue", "%d is negative; use 0 to refuse requests when every worker is busy", a.MaxQueue)
		}
		seen := map[string]bool{}
		for _, kv := range a.Env {
			name, _, ok := strings.Cut(kv, "=")
			switch {
			case !ok:
				c.add(k+".env", "%q is not KEY=VALUE", kv)
			case !validEnvName(name):
				c.add(k+".env", "%q: %q is not an environment variable name", kv, name)
			case seen[name]:
				c.add(k+".env", "%q is set twice", name)
			}
			seen[name] = true
		}
	}
}

// validatePaths refuses a URL path used by two routes or apps.
func validatePaths(cfg *Config, c *collector) {
	first := map[string]string{}
	check := func(key, p string) {
		if p == "" {
			return
		}
		if prev, dup := first[p]; dup {
			c.add(key, "%q is already used by %s (line %d)", p, prev, c.idx.lineOf(prev))
			return
		}
		first[p] = strings.TrimSuffix(key, ".path")
	}
	for i, r := range cfg.Routes {
		check(fmt.Sprintf("route[%d].path", i), r.Path)
	}
	for i, a := range cfg.Apps {
		check(fmt.Sprintf("app[%d].path", i), a.Path)
	}
}
