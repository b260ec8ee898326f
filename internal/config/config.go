// Package config is suserve's configuration: the TOML schema, its defaults,
// the embedded demo configuration, strict decoding and validation that report
// every problem with its file, line and key at once, and the cell arithmetic
// (budget / cell_memory = how many cells can exist).
package config

import (
	_ "embed"
	"fmt"
	"io"
	"os"
)

// Config is one suserve configuration. Every field has its default filled in
// after Parse; Routes and Apps are in file order.
type Config struct {
	Server     Server     `toml:"server"`
	Auth       Auth       `toml:"auth"`
	Identities Identities `toml:"identities"`
	Cells      Cells      `toml:"cells"`
	CGI        CGI        `toml:"cgi"`
	Routes     []Route    `toml:"route"`
	Apps       []App      `toml:"app"`

	// File is the file the configuration came from ("" for the embedded
	// default), for messages.
	File string `toml:"-"`
}

// Server is the [server] table: listeners, the unprivileged account, logs.
type Server struct {
	Listen          string   `toml:"listen"`           // host:port of the HTTP listener
	AdminListen     string   `toml:"admin_listen"`     // host:port of the status page and /metrics; "" disables
	User            string   `toml:"user"`             // account of the unprivileged front when started as root
	StateDir        string   `toml:"state_dir"`        // absolute; "" = a private temporary directory made at start
	LogFormat       string   `toml:"log_format"`       // "text" or "json"
	Diagnostics     string   `toml:"diagnostics"`      // "log" or "client": whether failure details reach clients
	ShutdownTimeout Duration `toml:"shutdown_timeout"` // drain time on SIGTERM/SIGINT
	ServerName      string   `toml:"server_name"`      // SERVER_NAME; "" = from the request's Host
}

// Auth is the [auth] table: who is asking.
type Auth struct {
	Mode         string   `toml:"mode"`          // "none", "basic" or "proxy"
	Realm        string   `toml:"realm"`         // Basic realm (RFC 7617 §2)
	Htpasswd     string   `toml:"htpasswd"`      // absolute path; mode "basic"
	ProxyHeader  string   `toml:"proxy_header"`  // header carrying the user name; mode "proxy"
	ProxyTrusted []string `toml:"proxy_trusted"` // CIDRs (or single addresses) of the trusted proxies; mode "proxy"
	CacheTTL     Duration `toml:"cache_ttl"`     // lifetime of a verified credential; 0 disables the cache
	CacheSize    int      `toml:"cache_size"`    // verified credentials kept; 0 disables the cache
	FailRate     float64  `toml:"fail_rate"`     // failed logins per second per client address; 0 disables limiting
	FailBurst    int      `toml:"fail_burst"`    // failed logins allowed at once before the rate applies
}

// Identities is the [identities] table: where user names become uids.
type Identities struct {
	Source string           `toml:"source"` // "system" or "static"
	UIDMin uint32           `toml:"uid_min"`
	GIDMin uint32           `toml:"gid_min"`
	Static []StaticIdentity `toml:"static"` // [[identities.static]], with source = "static"
}

// StaticIdentity is one [[identities.static]] entry.
type StaticIdentity struct {
	Name   string   `toml:"name"`
	UID    uint32   `toml:"uid"`
	GID    uint32   `toml:"gid"`
	Groups []uint32 `toml:"groups"` // supplementary groups
	Home   string   `toml:"home"`   // absolute; optional
}

// Cells is the [cells] table: one cgroup per identity, drawn from a budget.
type Cells struct {
	Backend         string   `toml:"backend"`           // "auto", "cgroup2", "cgroup1" or "none"
	Root            string   `toml:"root"`              // name of suserve's subtree under its own cgroup
	Budget          Size     `toml:"budget"`            // memory for all cells together
	CellMemory      Size     `toml:"cell_memory"`       // one cell's memory limit
	CellPids        int      `toml:"cell_pids"`         // one cell's pids limit
	CellCPUWeight   int      `toml:"cell_cpu_weight"`   // cpu.weight, 1..10000 (cpu.shares on v1 is scaled)
	CellMaxRequests int      `toml:"cell_max_requests"` // concurrent requests per identity; 0 = no limit
	IdleEvict       Duration `toml:"idle_evict"`        // idle cells are removed after this; 0 = only under budget pressure
	QueueTimeout    Duration `toml:"queue_timeout"`     // how long a request waits for a cell; 0 = refuse at once
}

// Capacity is how many cells can exist at once: budget / cell_memory, the
// trade between the size of one context and the number of contexts that
// SharedSection forced on IIS operators, made explicit.
func (c Cells) Capacity() int {
	if c.CellMemory <= 0 || c.Budget <= 0 {
		return 0
	}
	return int(c.Budget / c.CellMemory)
}

// CGI is the [cgi] table: the RFC 3875 gateway's limits.
type CGI struct {
	HeaderTimeout  Duration `toml:"header_timeout"`   // from start to a complete header block
	IdleTimeout    Duration `toml:"idle_timeout"`     // no output for this long
	MaxRequestBody Size     `toml:"max_request_body"` // larger bodies get 413 before a program starts
	PassEnv        []string `toml:"pass_env"`         // names passed from the server's environment
	DocumentRoot   string   `toml:"document_root"`    // DOCUMENT_ROOT and PATH_TRANSLATED base; "" = the route's dir
}

// Run-as modes of routes and apps.
const (
	RunAsSelf          = "self"          // the server's own user
	RunAsAuthenticated = "authenticated" // the user who authenticated the request
	RunAsOwner         = "owner"         // the user named by the URL (/~alice/...)
	RunAsAccount       = "account"       // one configured service account
)

// Route is one [[route]]: a URL prefix whose programs are CGI scripts in Dir.
type Route struct {
	Path      string `toml:"path"`      // URL prefix, starts and ends with "/"; owner routes contain {user}
	Dir       string `toml:"dir"`       // directory of the programs; placeholders {state}, and {user}, {home} in owner routes
	RunAs     string `toml:"run_as"`    // "self", "authenticated", "owner" or "account"
	Anonymous string `toml:"anonymous"` // identity for unauthenticated requests; run_as = "authenticated" only
	Account   string `toml:"account"`   // the identity; run_as = "account" only

	// Line is where the route is defined (0 when unknown), for messages
	// at run time.
	Line int `toml:"-"`
}

// App protocols.
const (
	ProtocolFastCGI = "fastcgi"
	ProtocolHTTP    = "http"
)

// App is one [[app]]: a persistent application behind a URL prefix.
type App struct {
	Path         string   `toml:"path"`          // URL prefix, starts and ends with "/"
	Protocol     string   `toml:"protocol"`      // "fastcgi" or "http" (over a unix socket)
	Dir          string   `toml:"dir"`           // document root: DOCUMENT_ROOT, SCRIPT_FILENAME; may use {state}
	Command      []string `toml:"command"`       // argv; the program is absolute
	RunAs        string   `toml:"run_as"`        // "account" or "authenticated" (a pool per user)
	Account      string   `toml:"account"`       // the identity; run_as = "account" only
	Workers      int      `toml:"workers"`       // processes per pool, 1..64
	Concurrency  int      `toml:"concurrency"`   // requests one worker is given at once, 1..1024
	IdleStop     Duration `toml:"idle_stop"`     // a pool without requests this long is stopped; 0 = never
	StartTimeout Duration `toml:"start_timeout"` // how long a worker may take to open its socket
	MaxQueue     int      `toml:"max_queue"`     // requests waiting for a busy pool; then 503
	Env          []string `toml:"env"`           // KEY=VALUE added to the workers' environment

	Line int `toml:"-"` // where the app is defined (0 when unknown)
}

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the text of the embedded demo configuration.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Default returns the embedded demo configuration. It panics if the embedded
// file does not parse, which a test rules out.
func Default() *Config {
	c, err := Parse(defaultTOML, "(embedded default)")
	if err != nil {
		panic("config: the embedded default configuration is invalid: " + err.Error())
	}
	c.File = ""
	return c
}

// defaults returns the configuration with every table's defaults, and no
// routes or apps.
func defaults() *Config {
	return &Config{
		Server: Server{
			Listen:          "127.0.0.1:8080",
			User:            "suserve",
			LogFormat:       "text",
			Diagnostics:     "log",
			ShutdownTimeout: Duration(10e9),
		},
		Auth: Auth{
			Mode:      "none",
			Realm:     "suserve",
			CacheTTL:  Duration(5 * 60e9),
			CacheSize: 1024,
			FailRate:  1,
			FailBurst: 10,
		},
		Identities: Identities{Source: "system", UIDMin: 1000, GIDMin: 1000},
		Cells: Cells{
			Backend:         "auto",
			Root:            "suserve",
			Budget:          4 * GiB,
			CellMemory:      256 * MiB,
			CellPids:        64,
			CellCPUWeight:   100,
			CellMaxRequests: DefaultCellMaxRequests,
			IdleEvict:       Duration(5 * 60e9),
			QueueTimeout:    Duration(10e9),
		},
		CGI: CGI{
			HeaderTimeout:  Duration(30e9),
			IdleTimeout:    Duration(60e9),
			MaxRequestBody: 32 * MiB,
		},
	}
}

// DefaultCellMaxRequests is the default limit of concurrent requests of one
// identity: a quarter of the default pids limit, so that each request's
// program can still fork a few children before the cell's pids limit bites.
const DefaultCellMaxRequests = 16

// Defaults of the per-entry keys of [[route]] and [[app]].
const (
	DefaultAppWorkers  = 1
	DefaultAppMaxQueue = 64
)

// DefaultAppConcurrency is how many requests one worker of protocol is
// given at once when the file does not say: one for FastCGI, since php-cgi
// serves one connection at a time, and 64 for HTTP, whose servers take
// many (a WebSocket holds its slot while open).
func DefaultAppConcurrency(protocol string) int {
	if protocol == ProtocolHTTP {
		return 64
	}
	return 1
}

var (
	defaultAppIdleStop     = Duration(10 * 60e9)
	defaultAppStartTimeout = Duration(10e9)
)

// maxFileSize bounds what Load reads: a configuration is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads and parses the configuration file at path. Errors are
// Problems (each with file, line and key) or an *os.PathError.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	if len(data) > maxFileSize {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("file is larger than %d bytes; a configuration is a few kilobytes", maxFileSize)}}
	}
	return Parse(data, path)
}
