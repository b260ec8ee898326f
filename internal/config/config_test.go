package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// minimal is the smallest file that leaves every table at its defaults.
const minimal = "# nothing but defaults\n"

func TestEmptyFileGetsEveryDefault(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "min.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Server: Server{
			Listen: "127.0.0.1:8080", AdminListen: "", User: "suserve", StateDir: "",
			LogFormat: "text", Diagnostics: "log", ShutdownTimeout: Duration(10 * time.Second), ServerName: "",
		},
		Auth: Auth{
			Mode: "none", Realm: "suserve", CacheTTL: Duration(5 * time.Minute), CacheSize: 1024,
			FailRate: 1, FailBurst: 10,
		},
		Identities: Identities{Source: "system", UIDMin: 1000, GIDMin: 1000},
		Cells: Cells{
			Backend: "auto", Root: "suserve", Budget: 4 * GiB, CellMemory: 256 * MiB, CellPids: 64,
			CellCPUWeight: 100, CellMaxRequests: 16, IdleEvict: Duration(5 * time.Minute),
			QueueTimeout: Duration(10 * time.Second),
		},
		CGI: CGI{
			HeaderTimeout: Duration(30 * time.Second), IdleTimeout: Duration(60 * time.Second),
			MaxRequestBody: 32 * MiB,
		},
		File: "min.toml",
	}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *cfg, want)
	}
	if got := cfg.Cells.Capacity(); got != 16 {
		t.Errorf("default capacity = %d; want 16 (4GiB / 256MiB)", got)
	}
}

func TestEntryDefaultsFillOnlyMissingKeys(t *testing.T) {
	cfg, err := Parse([]byte(`
[[route]]
path = "/cgi-bin/"
dir = "/srv/cgi-bin"

[[app]]
path = "/wiki/"
protocol = "fastcgi"
command = ["/usr/bin/php-cgi"]
account = "wiki"

[[app]]
path = "/svc/"
protocol = "http"
command = ["/usr/local/bin/svc", "-v"]
account = "svc"
workers = 4
concurrency = 8
idle_stop = "0s"
start_timeout = "2s"
max_queue = 0

[[app]]
path = "/ws/"
protocol = "http"
command = ["/usr/local/bin/ws"]
account = "svc"
`), "e.toml")
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Routes[0]; r.RunAs != RunAsSelf || r.Line != 2 {
		t.Errorf("route = %+v; want run_as self, line 2", r)
	}
	a := cfg.Apps[0]
	if a.RunAs != RunAsAccount || a.Workers != 1 || a.Concurrency != 1 || a.IdleStop.D() != 10*time.Minute || a.StartTimeout.D() != 10*time.Second || a.MaxQueue != 64 || a.Line != 6 {
		t.Errorf("app defaults = %+v; want run_as account, workers 1, concurrency 1 (FastCGI), idle_stop 10m, start_timeout 10s, max_queue 64, line 6", a)
	}
	b := cfg.Apps[1]
	if b.Workers != 4 || b.Concurrency != 8 || b.IdleStop != 0 || b.StartTimeout.D() != 2*time.Second || b.MaxQueue != 0 {
		t.Errorf("explicit app values = %+v; want workers 4, concurrency 8, idle_stop 0, start_timeout 2s, max_queue 0", b)
	}
	if c := cfg.Apps[2]; c.Concurrency != 64 {
		t.Errorf("an HTTP app's default concurrency is %d, want 64", c.Concurrency)
	}
}

func TestEmbeddedDefaultIsTheDemo(t *testing.T) {
	cfg := Default()
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.Server.AdminListen != "127.0.0.1:8081" || cfg.Server.Diagnostics != "client" {
		t.Errorf("server = %+v; want the demo listeners and diagnostics = client", cfg.Server)
	}
	if cfg.Cells.Backend != "auto" {
		t.Errorf("cells.backend = %q; want auto", cfg.Cells.Backend)
	}
	want := []Route{{Path: "/cgi-bin/", Dir: "{state}/cgi-bin", RunAs: RunAsSelf}}
	for i := range cfg.Routes {
		cfg.Routes[i].Line = 0
	}
	if !reflect.DeepEqual(cfg.Routes, want) {
		t.Errorf("routes = %+v; want %+v", cfg.Routes, want)
	}
	if got := cfg.Routes[0].ExpandDir("/run/suserve-123", "", ""); got != "/run/suserve-123/cgi-bin" {
		t.Errorf("demo dir expands to %q", got)
	}
	if cfg.File != "" {
		t.Errorf("File = %q; want empty for the embedded default", cfg.File)
	}
	if !strings.Contains(string(DefaultTOML()), "#") {
		t.Error("the embedded default should be commented for operators")
	}
}

func TestThreeMistakesAreAllReportedWithTheirLines(t *testing.T) {
	doc := `[server]
listen = "127.0.0.1:8080"
listn = "127.0.0.1:9090"

[cells]
budget = "4 gigs"

[[route]]
path = "/cgi-bin/"
dir = "/srv/cgi-bin"
run_as = "root"
`
	_, err := Parse([]byte(doc), "three.toml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error = %v (%T); want Problems", err, err)
	}
	want := []struct {
		line int
		key  string
		msg  string
	}{
		{3, "server.listn", `unknown key; did you mean "listen"?`},
		{6, "cells.budget", `invalid size "4 gigs"`},
		{11, "route[0].run_as", `"root" is not one of`},
	}
	if len(ps) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		p := ps[i]
		if p.File != "three.toml" || p.Line != w.line || p.Key != w.key || !strings.Contains(p.Msg, w.msg) {
			t.Errorf("problem %d = %+v; want line %d key %s msg containing %q", i, p, w.line, w.key, w.msg)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "three.toml:3: server.listn: ") || !strings.HasPrefix(lines[2], "three.toml:11: route[0].run_as: ") {
		t.Errorf("Error() = %q; want one file:line: key: msg per line", err.Error())
	}
}

func TestSyntaxErrorReportsItsLine(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line      int
	}{
		{"unterminated string", "[server]\nlisten = \"127.0.0.1:8080\nuser = \"x\"\n", 2},
		{"missing value", "[server]\n\n\nlisten =\n", 4},
		{"unclosed table", "[cells]\nbudget = \"1GiB\"\n[route\n", 3},
		{"garbage", "[server]\nlisten = \"a:1\"\n!!\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "syn.toml")
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 {
				t.Fatalf("error = %v; want one problem", err)
			}
			if ps[0].Line != tc.line || !strings.HasPrefix(ps[0].Msg, "syntax error: ") {
				t.Errorf("problem = %+v; want a syntax error at line %d", ps[0], tc.line)
			}
		})
	}
}

func TestDecodeProblemsCarryTheirCause(t *testing.T) {
	_, err := Parse([]byte("[cells]\ncell_memory = \"1 GB\"\n"), "c.toml")
	var se *SizeError
	if !errors.As(err, &se) || se.Text != "1 GB" {
		t.Errorf("errors.As(*SizeError) on %v: got %+v", err, se)
	}
	_, err = Parse([]byte("[server]\nbogus = 1\n"), "c.toml")
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		t.Errorf("errors.As(*toml.DecodeError) on %v failed", err)
	}
	var p Problem
	if !errors.As(err, &p) || p.Key != "server.bogus" {
		t.Errorf("errors.As(Problem) on %v: got %+v", err, p)
	}
}

func TestWrongTypesAreReportedTogether(t *testing.T) {
	doc := `[server]
listen = 8080                       # 2
shutdown_timeout = 10               # 3
[auth]
proxy_trusted = "10.0.0.0/8"        # 5
fail_rate = "fast"                  # 6
[cells]
cell_pids = "many"                  # 8
budget = 1.5                        # 9
cell_memory = true                  # 10
[identities]
uid_min = -1                        # 12
[cgi]
pass_env = "LANG"                   # 14
`
	_, err := Parse([]byte(doc), "types.toml")
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error = %v; want Problems", err)
	}
	want := map[int]string{
		2: "server.listen", 3: "server.shutdown_timeout", 5: "auth.proxy_trusted", 6: "auth.fail_rate",
		8: "cells.cell_pids", 9: "cells.budget", 10: "cells.cell_memory", 12: "identities.uid_min", 14: "cgi.pass_env",
	}
	got := map[int]string{}
	for _, p := range ps {
		got[p.Line] = p.Key
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems by line = %v; want %v\n%v", got, want, err)
	}
	for _, p := range ps {
		if p.Line == 2 && p.Msg != "expected a string, not a TOML integer" {
			t.Errorf("type mismatch message = %q", p.Msg)
		}
		if p.Line == 3 && !strings.Contains(p.Msg, `needs a unit, e.g. "10s"`) {
			t.Errorf("bare duration message = %q", p.Msg)
		}
	}
}

func TestKeysInsideInlineTablesAndArraysAreLocated(t *testing.T) {
	doc := `server = { listen = "127.0.0.1:1", bogus = 1 }
route = [
  { path = "/a/", dir = "/srv/a" },
  { path = "/b/", dir = "/srv/b", run_as = "nobody" },
]
`
	_, err := Parse([]byte(doc), "inline.toml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 2 {
		t.Fatalf("error = %v; want 2 problems", err)
	}
	if ps[0].Line != 1 || ps[0].Key != "server.bogus" {
		t.Errorf("first problem = %+v; want line 1 server.bogus", ps[0])
	}
	if ps[1].Line != 4 || ps[1].Key != "route[1].run_as" {
		t.Errorf("second problem = %+v; want line 4 route[1].run_as", ps[1])
	}
}

func TestDuplicateKeyAndTableAreReported(t *testing.T) {
	doc := `[server]
listen = "127.0.0.1:1"
listen = "127.0.0.1:2"
[cells]
budget = "1GiB"
[cells]
budget = "2GiB"
[cgi]
max_request_body = "1 ton"
`
	_, err := Parse([]byte(doc), "dup.toml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("error = %v; want 3 problems", err)
	}
	for i, line := range []int{3, 6, 9} {
		if ps[i].Line != line {
			t.Errorf("problem %d = %+v; want line %d", i, ps[i], line)
		}
	}
}

func TestLoadReadsAFileAndNamesIt(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	if err := os.WriteFile(good, []byte("[server]\nlisten = \"127.0.0.1:0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(good)
	if err != nil || cfg.Server.Listen != "127.0.0.1:0" || cfg.File != good {
		t.Fatalf("Load = %+v, %v", cfg, err)
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[server]\nlog_format = \"xml\"\n"), 0o644)
	_, err = Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":2: server.log_format: ") {
		t.Errorf("Load(bad) = %v; want %s:2: server.log_format: ...", err, bad)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v; want ErrNotExist", err)
	}
	_, err = Load(dir)
	var pe *os.PathError
	if !errors.As(err, &pe) {
		t.Errorf("Load(directory) = %v; want *os.PathError", err)
	}

	huge := filepath.Join(dir, "huge.toml")
	os.WriteFile(huge, []byte(strings.Repeat("# padding\n", maxFileSize/10+1)), 0o644)
	_, err = Load(huge)
	var ps Problems
	if !errors.As(err, &ps) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(huge) = %v; want a size problem", err)
	}
}

func TestSummaryShowsTheCellArithmetic(t *testing.T) {
	cfg, err := Parse([]byte(`
[auth]
mode = "basic"
htpasswd = "/etc/suserve/htpasswd"
[cells]
budget = "1GiB"
cell_memory = "300MiB"
cell_max_requests = 0
[[route]]
path = "/~{user}/cgi-bin/"
dir = "{home}/public_html/cgi-bin"
run_as = "owner"
[[route]]
path = "/cgi-bin/"
dir = "/srv/cgi-bin"
run_as = "authenticated"
anonymous = "nobody"
[[app]]
path = "/wiki/"
protocol = "fastcgi"
command = ["/usr/bin/php-cgi"]
account = "wiki"
`), "sum.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Summary()
	for _, want := range []string{
		"configuration: sum.toml",
		"budget 1GiB / cell_memory 300MiB = 3 cells",
		"124MiB of the budget is left over",
		"no limit on concurrent requests",
		"mode              basic",
		"route /~{user}/cgi-bin/",
		"the user named in the path",
		"unauthenticated requests as nobody",
		"app /wiki/",
		"runs as           wiki",
		"admin_listen      disabled",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if !strings.Contains(Default().Summary(), "budget 4GiB / cell_memory 256MiB = 16 cells") {
		t.Errorf("default summary:\n%s", Default().Summary())
	}
}

func TestCapacityIsBudgetOverCellMemory(t *testing.T) {
	for _, tc := range []struct {
		budget, cell Size
		want         int
	}{
		{4 * GiB, 256 * MiB, 16}, {GiB, 300 * MiB, 3}, {256 * MiB, 256 * MiB, 1}, {100 * MiB, 256 * MiB, 0}, {GiB, 0, 0},
	} {
		if got := (Cells{Budget: tc.budget, CellMemory: tc.cell}).Capacity(); got != tc.want {
			t.Errorf("Capacity(%s / %s) = %d; want %d", tc.budget, tc.cell, got, tc.want)
		}
	}
}

func TestRouteMatchAndExpandDir(t *testing.T) {
	owner := Route{Path: "/~{user}/cgi-bin/", Dir: "{home}/public_html/cgi-bin", RunAs: RunAsOwner}
	for _, tc := range []struct {
		url                string
		user, prefix, rest string
		ok                 bool
	}{
		{"/~alice/cgi-bin/env.sh/x", "alice", "/~alice/cgi-bin/", "env.sh/x", true},
		{"/~bob/cgi-bin/", "bob", "/~bob/cgi-bin/", "", true},
		{"/~/cgi-bin/x", "", "", "", false},
		{"/~../cgi-bin/x", "", "", "", false},
		{"/~alice/other/x", "", "", "", false},
		{"/cgi-bin/x", "", "", "", false},
	} {
		user, prefix, rest, ok := owner.Match(tc.url)
		if user != tc.user || prefix != tc.prefix || rest != tc.rest || ok != tc.ok {
			t.Errorf("Match(%q) = %q %q %q %v; want %q %q %q %v", tc.url, user, prefix, rest, ok, tc.user, tc.prefix, tc.rest, tc.ok)
		}
	}
	if got := owner.ExpandDir("/state", "alice", "/home/alice"); got != "/home/alice/public_html/cgi-bin" {
		t.Errorf("owner ExpandDir = %q", got)
	}
	plain := Route{Path: "/cgi-bin/", Dir: "{state}/cgi-bin/"}
	if user, prefix, rest, ok := plain.Match("/cgi-bin/a/b"); !ok || user != "" || prefix != "/cgi-bin/" || rest != "a/b" {
		t.Errorf("plain Match = %q %q %q %v", user, prefix, rest, ok)
	}
	if _, _, _, ok := plain.Match("/cgi-binx"); ok {
		t.Error("plain route matched a path outside it")
	}
	if got := plain.ExpandDir("/tmp/s", "", ""); got != "/tmp/s/cgi-bin" {
		t.Errorf("plain ExpandDir = %q", got)
	}
	if got := (App{Dir: "{state}/wiki"}).ExpandDir("/tmp/s"); got != "/tmp/s/wiki" {
		t.Errorf("app ExpandDir = %q", got)
	}
}

func TestTrustedProxiesAcceptsAddressesAndPrefixes(t *testing.T) {
	a := Auth{ProxyTrusted: []string{"10.1.2.3/8", "192.0.2.7", "2001:db8::/32"}}
	var got []string
	for _, p := range a.TrustedProxies() {
		got = append(got, p.String())
	}
	if want := []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedProxies = %v; want %v", got, want)
	}
}
