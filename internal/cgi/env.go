package cgi

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// defaultPath is the PATH a program gets unless pass_env names PATH: the
// server's own PATH is not passed (launchers may fix it further).
const defaultPath = "PATH=/usr/local/bin:/usr/bin:/bin"

// metaVariables are the names the gateway sets itself; pass_env cannot
// override them.
var metaVariables = map[string]bool{
	"AUTH_TYPE": true, "CONTENT_LENGTH": true, "CONTENT_TYPE": true, "GATEWAY_INTERFACE": true,
	"PATH_INFO": true, "PATH_TRANSLATED": true, "QUERY_STRING": true, "REMOTE_ADDR": true,
	"REMOTE_HOST": true, "REMOTE_PORT": true, "REMOTE_USER": true, "REQUEST_METHOD": true,
	"SCRIPT_NAME": true, "SCRIPT_FILENAME": true, "SERVER_NAME": true, "SERVER_PORT": true,
	"SERVER_PROTOCOL": true, "SERVER_SOFTWARE": true, "REQUEST_URI": true, "DOCUMENT_ROOT": true,
	"HTTPS": true, "REDIRECT_STATUS": true, "REDIRECT_URL": true,
}

// skipHeader are request header fields never passed as HTTP_*: credentials
// (RFC 3875 §4.1.18 lets a server withhold them; a program must not see the
// user's password), Proxy (httpoxy, CVE-2016-5385: HTTP_PROXY would be read as
// the proxy setting) and fields the gateway passes as CONTENT_* already.
var skipHeader = map[string]bool{
	"Authorization":       true,
	"Proxy-Authorization": true,
	"Proxy":               true,
	"Content-Length":      true,
	"Content-Type":        true,
}

// script is the program a URL names (RFC 3875 §3.3).
type script struct {
	file     string // SCRIPT_FILENAME: the file under the route's directory
	name     string // SCRIPT_NAME: the URL path up to and including the file
	pathInfo string // PATH_INFO: the rest of the URL path, decoded
	nph      bool   // non-parsed header program (RFC 3875 §5)
}

// MetaVars are the values of a request's CGI meta-variables (RFC 3875
// §4.1) that the gateway decides rather than reads from the request: where
// the script is, how long the body is, who authenticated. The CGI gateway
// passes the result as a program's environment, the app gateway as
// FastCGI params.
type MetaVars struct {
	Software       string // SERVER_SOFTWARE; "" is "suserve"
	DocumentRoot   string // DOCUMENT_ROOT, and the root PATH_TRANSLATED maps PATH_INFO onto
	ScriptName     string // SCRIPT_NAME: the URL path up to and including the script
	ScriptFilename string // SCRIPT_FILENAME: the script's file
	PathInfo       string // PATH_INFO, decoded; "" sets neither it nor PATH_TRANSLATED
	ContentLength  int64  // CONTENT_LENGTH; < 0 leaves it unset
	AuthType       string // AUTH_TYPE; "" leaves it unset
	User           string // REMOTE_USER; "" leaves it unset
}

// Each calls add with every meta-variable of r, in a fixed order: the
// server's and the client's, the script's, CONTENT_*, then HTTP_HOST and
// the request's header fields as HTTP_* (never credentials, Proxy, or a
// name that would be ambiguous as a variable).
func (m *MetaVars) Each(r *http.Request, add func(name, value string)) {
	software := m.Software
	if software == "" {
		software = "suserve"
	}
	add("SERVER_SOFTWARE", software)
	add("GATEWAY_INTERFACE", "CGI/1.1")
	add("SERVER_PROTOCOL", r.Proto)
	add("REQUEST_METHOD", r.Method)
	add("REQUEST_URI", r.RequestURI)
	add("QUERY_STRING", r.URL.RawQuery) // §4.1.7: as sent, still encoded; "" when none

	name, port := serverNamePort(r)
	add("SERVER_NAME", name)
	add("SERVER_PORT", port)
	if r.TLS != nil {
		add("HTTPS", "on")
	}

	if host, rport, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		add("REMOTE_ADDR", host)
		add("REMOTE_HOST", host) // §4.1.9: the address when no name is looked up
		add("REMOTE_PORT", rport)
	} else {
		add("REMOTE_ADDR", r.RemoteAddr)
		add("REMOTE_HOST", r.RemoteAddr)
	}
	if m.AuthType != "" {
		add("AUTH_TYPE", m.AuthType)
	}
	if m.User != "" {
		add("REMOTE_USER", m.User)
	}

	add("DOCUMENT_ROOT", m.DocumentRoot)
	add("SCRIPT_NAME", m.ScriptName)
	add("SCRIPT_FILENAME", m.ScriptFilename)
	if m.PathInfo != "" {
		// §4.1.5 and §4.1.6: both NULL when there is no path info.
		// PATH_TRANSLATED maps it onto the document root, as Apache does.
		add("PATH_INFO", m.PathInfo)
		add("PATH_TRANSLATED", strings.TrimSuffix(m.DocumentRoot, "/")+m.PathInfo)
	}
	if m.ContentLength >= 0 {
		add("CONTENT_LENGTH", strconv.FormatInt(m.ContentLength, 10))
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		add("CONTENT_TYPE", ct)
	}

	// §4.1.18: the Host field is not in r.Header.
	if r.Host != "" {
		add("HTTP_HOST", r.Host)
	}
	for k, vv := range r.Header {
		if skipHeader[k] || !envableName(k) {
			continue
		}
		add(headerVarName(k), joinValues(vv))
	}
}

// env builds the complete environment of a program (RFC 3875 §4.1): the
// meta-variables, the request's header fields as HTTP_*, PATH and the
// pass_env variables, and nothing else of the server's own environment.
// The first fromRequest entries are those the request made, which
// checkEnv bounds; the server's own (pass_env, PATH) follow.
// CONTENT_LENGTH is not among them: the body decides it (see serve).
func (h *Handler) env(r *http.Request, rec *Record, sc *script) (env []string, fromRequest int) {
	env = make([]string, 0, 24+len(r.Header)+len(h.PassEnv))
	add := func(k, v string) { env = append(env, k+"="+v) }

	docRoot := h.DocumentRoot
	if docRoot == "" {
		docRoot = h.Root
	}
	m := MetaVars{
		Software:       h.ServerSoftware,
		DocumentRoot:   docRoot,
		ScriptName:     sc.name,
		ScriptFilename: sc.file,
		PathInfo:       sc.pathInfo,
		ContentLength:  -1,
		AuthType:       rec.AuthType,
		User:           rec.User,
	}
	m.Each(r, add)
	fromRequest = len(env)

	pathSet := false
	for _, k := range h.PassEnv {
		if metaVariables[k] || strings.HasPrefix(k, "HTTP_") {
			continue
		}
		if v, ok := os.LookupEnv(k); ok {
			add(k, v)
			pathSet = pathSet || k == "PATH"
		}
	}
	if !pathSet {
		env = append(env, defaultPath)
	}
	return env, fromRequest
}

// What a request makes of a program's environment is bounded whatever
// the launcher: one variable (NAME=value) at most MaxEnvVar bytes, all of
// them at most MaxEnvTotal, and at most MaxEnvVars of them. The server's
// own variables (PATH, HOME, USER, LOGNAME, pass_env) and CONTENT_LENGTH
// come on top. The bounds fit a spawn request across the privilege
// boundary (internal/spawn: 16 KiB a string, 1024 environment entries,
// 64 KiB a message, with room for the path, names and arguments), so a
// request gets the same answer with privilege separation and without.
// Apache's are tighter: 8190 bytes a header field or request line, 100
// header fields.
const (
	MaxEnvVar   = 16 << 10
	MaxEnvTotal = 48 << 10
	MaxEnvVars  = 1000
)

// uriVariables are the meta-variables made from the request's URL.
var uriVariables = map[string]bool{
	"QUERY_STRING": true, "REQUEST_URI": true, "PATH_INFO": true, "PATH_TRANSLATED": true,
	"SCRIPT_NAME": true, "SCRIPT_URI": true, "SCRIPT_URL": true,
}

// checkEnv refuses an environment over the bounds before any program
// runs: 414 when the URL made it too large, 431 when the header fields did.
func checkEnv(env []string) *Failure {
	if len(env) > MaxEnvVars {
		return newFailure(HeadersLarge, "the program's environment would have %d variables; the limit is %d", len(env), MaxEnvVars)
	}
	total, fromURI := 0, 0
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if len(kv) > MaxEnvVar {
			c := HeadersLarge
			if uriVariables[name] {
				c = URITooLong
			}
			return newFailure(c, "%s would be %d bytes; a variable's limit is %d", name, len(kv), MaxEnvVar)
		}
		total += len(kv)
		if uriVariables[name] {
			fromURI += len(kv)
		}
	}
	if total > MaxEnvTotal {
		c := HeadersLarge
		if 2*fromURI > total {
			c = URITooLong
		}
		return newFailure(c, "the program's environment would be %d bytes; the limit is %d", total, MaxEnvTotal)
	}
	return nil
}

// envableName reports whether a header field name maps to one HTTP_* name
// without ambiguity. Names with "_" are dropped, as Apache 2.4 does, because
// "X-User" and "X_User" would both become HTTP_X_USER and a client could
// forge one a front proxy sets.
func envableName(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return k != ""
}

// headerVarName is HTTP_NAME for field k: §4.1.18 upper case, "-" as "_".
func headerVarName(k string) string {
	b := make([]byte, 0, 5+len(k))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '-':
			c = '_'
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// joinValues joins a repeated field's values with ", ", as RFC 9110 §5.3
// allows.
func joinValues(vv []string) string {
	if len(vv) == 1 {
		return vv[0]
	}
	return strings.Join(vv, ", ")
}

// serverNamePort is SERVER_NAME and SERVER_PORT (§4.1.14, §4.1.15): the
// request's Host, and the port it names or the one the connection came in on.
func serverNamePort(r *http.Request) (string, string) {
	host := r.Host
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ""
	}
	if port == "" {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, p, err := net.SplitHostPort(la.String()); err == nil {
				port = p
			}
		}
	}
	if port == "" {
		port = "80"
		if r.TLS != nil {
			port = "443"
		}
	}
	if name == "" {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if h, _, err := net.SplitHostPort(la.String()); err == nil {
				name = h
			}
		}
	}
	return name, port
}
