package config

import (
	"errors"
	"strings"
	"testing"
)

// markerLine returns the line of doc that carries the "#<" marker.
func markerLine(t *testing.T, doc string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, "#<") {
			return i + 1
		}
	}
	t.Fatalf("no #< marker in %q", doc)
	return 0
}

const (
	basicAuth  = "[auth]\nmode = \"basic\"\nhtpasswd = \"/etc/suserve/htpasswd\"\n"
	staticIDs  = "[identities]\nsource = \"static\"\n[[identities.static]]\nname = \"alice\"\nuid = 61001\ngid = 61001\n"
	selfRoute  = "[[route]]\npath = \"/cgi-bin/\"\ndir = \"/srv/cgi-bin\"\n"
	wikiAppTop = "[[app]]\npath = \"/wiki/\"\nprotocol = \"fastcgi\"\ncommand = [\"/usr/bin/php-cgi\"]\naccount = \"wiki\"\n"
)

// Every validation rule: the document has exactly one problem, on the line
// marked "#<", with this key and a message containing msg.
func TestEachRuleReportsItsLineAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, doc, key, msg string
	}{
		// [server]
		{"listen empty", "[server]\nlisten = \"\" #<\n", "server.listen", "must not be empty"},
		{"listen without port", "[server]\nlisten = \"localhost\" #<\n", "server.listen", "not host:port"},
		{"listen port out of range", "[server]\nlisten = \"127.0.0.1:99999\" #<\n", "server.listen", "port \"99999\""},
		{"admin_listen malformed", "[server]\nadmin_listen = \"8081\" #<\n", "server.admin_listen", "not host:port"},
		{"admin_listen same as listen", "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\" #<\n", "server.admin_listen", "also server.listen"},
		{"user invalid", "[server]\nuser = \"web user\" #<\n", "server.user", "not a valid user name"},
		{"state_dir relative", "[server]\nstate_dir = \"var/suserve\" #<\n", "server.state_dir", "not an absolute path"},
		{"state_dir dotdot", "[server]\nstate_dir = \"/var/../etc\" #<\n", "server.state_dir", `contains ".."`},
		{"log_format unknown", "[server]\nlog_format = \"xml\" #<\n", "server.log_format", `"xml" is not one of "text", "json"`},
		{"diagnostics unknown", "[server]\ndiagnostics = \"verbose\" #<\n", "server.diagnostics", `not one of "log", "client"`},
		{"server_name not a host", "[server]\nserver_name = \"example.org/x\" #<\n", "server.server_name", "not a host name"},

		// [auth]
		{"mode unknown", "[auth]\nmode = \"ldap\" #<\n", "auth.mode", "not one of"},
		{"realm empty", "[auth]\nrealm = \"\" #<\n", "auth.realm", "must not be empty"},
		{"realm with quote", "[auth]\nrealm = 'a\"b' #<\n", "auth.realm", "quote"},
		{"basic without htpasswd", "[auth] #<\nmode = \"basic\"\n", "auth.htpasswd", "required with mode = \"basic\""},
		{"htpasswd relative", "[auth]\nmode = \"basic\"\nhtpasswd = \"htpasswd\" #<\n", "auth.htpasswd", "not an absolute path"},
		{"htpasswd without basic", "[auth]\nhtpasswd = \"/etc/htpasswd\" #<\n", "auth.htpasswd", "only with mode = \"basic\""},
		{"proxy without header", "[auth] #<\nmode = \"proxy\"\nproxy_trusted = [\"10.0.0.1\"]\n", "auth.proxy_header", "required"},
		{"proxy header not a token", "[auth]\nmode = \"proxy\"\nproxy_header = \"X User\" #<\nproxy_trusted = [\"10.0.0.1\"]\n", "auth.proxy_header", "not a header name"},
		{"proxy header authorization", "[auth]\nmode = \"proxy\"\nproxy_header = \"Authorization\" #<\nproxy_trusted = [\"10.0.0.1\"]\n", "auth.proxy_header", "dedicated header"},
		{"proxy without trusted", "[auth] #<\nmode = \"proxy\"\nproxy_header = \"X-Remote-User\"\n", "auth.proxy_trusted", "required"},
		{"proxy trusted bad CIDR", "[auth]\nmode = \"proxy\"\nproxy_header = \"X-Remote-User\"\nproxy_trusted = [\"10.0.0.0/8\", \"10.0.0.0/33\"] #<\n", "auth.proxy_trusted", `"10.0.0.0/33" is not an address or CIDR`},
		{"proxy header without proxy", "[auth]\nproxy_header = \"X-User\" #<\n", "auth.proxy_header", "only with mode = \"proxy\""},
		{"proxy trusted without proxy", "[auth]\nproxy_trusted = [\"10.0.0.1\"] #<\n", "auth.proxy_trusted", "only with mode = \"proxy\""},
		{"cache_size negative", "[auth]\ncache_size = -1 #<\n", "auth.cache_size", "negative"},
		{"fail_rate negative", "[auth]\nfail_rate = -0.5 #<\n", "auth.fail_rate", "not a rate"},
		{"fail_rate nan", "[auth]\nfail_rate = nan #<\n", "auth.fail_rate", "not a rate"},
		{"fail_rate inf", "[auth]\nfail_rate = inf #<\n", "auth.fail_rate", "not a rate"},
		{"fail_burst negative", "[auth]\nfail_burst = -1 #<\n", "auth.fail_burst", "negative"},
		{"fail_burst zero with a rate", "[auth]\nfail_rate = 2.0\nfail_burst = 0 #<\n", "auth.fail_burst", "at least 1"},

		// [identities]
		{"source unknown", "[identities]\nsource = \"ldap\" #<\n", "identities.source", "not one of"},
		{"uid_min zero", "[identities]\nuid_min = 0 #<\n", "identities.uid_min", "uid 0 is root"},
		{"gid_min zero", "[identities]\ngid_min = 0 #<\n", "identities.gid_min", "root's group"},
		{"uid_min negative", "[identities]\nuid_min = -5 #<\n", "identities.uid_min", "negative integer"},
		{"static source without entries", "[identities]\nsource = \"static\" #<\n", "identities.source", "no [[identities.static]]"},
		{"static entries with system source", "[identities]\n[[identities.static]] #<\nname = \"alice\"\nuid = 61001\ngid = 61001\n", "identities.static[0]", "only with source = \"static\""},
		{"static name missing", staticIDs + "[[identities.static]] #<\nuid = 61002\ngid = 61002\n", "identities.static[1].name", "is required"},
		{"static name invalid", staticIDs + "[[identities.static]]\nname = \"b:b\" #<\nuid = 61002\ngid = 61002\n", "identities.static[1].name", "not a valid user name"},
		{"static name duplicate", staticIDs + "[[identities.static]]\nname = \"alice\" #<\nuid = 61002\ngid = 61002\n", "identities.static[1].name", `"alice" is already defined at line 3`},
		{"static uid missing", staticIDs + "[[identities.static]] #<\nname = \"bob\"\ngid = 61002\n", "identities.static[1].uid", "is required"},
		{"static uid zero", staticIDs + "[[identities.static]]\nname = \"root2\"\nuid = 0 #<\ngid = 61002\n", "identities.static[1].uid", "uid 0 is root"},
		{"static gid zero", staticIDs + "[[identities.static]]\nname = \"bob\"\nuid = 61002\ngid = 0 #<\n", "identities.static[1].gid", "gid 0 is root"},
		{"static uid below minimum", staticIDs + "[[identities.static]]\nname = \"bob\"\nuid = 500 #<\ngid = 61002\n", "identities.static[1].uid", "below identities.uid_min (1000)"},
		{"static gid below minimum", staticIDs + "[[identities.static]]\nname = \"bob\"\nuid = 61002\ngid = 999 #<\n", "identities.static[1].gid", "below identities.gid_min (1000)"},
		{"static uid invalid", staticIDs + "[[identities.static]]\nname = \"bob\"\nuid = 4294967295 #<\ngid = 61002\n", "identities.static[1].uid", "not a valid uid"},
		{"static uid too large", staticIDs + "[[identities.static]]\nname = \"bob\"\nuid = 4294967296 #<\ngid = 61002\n", "identities.static[1].uid", "cannot be stored"},
		{"static groups with root group", staticIDs + "groups = [61001, 0] #<\n", "identities.static[0].groups", "gid 0 is root's group"},
		{"static home relative", staticIDs + "home = \"home/alice\" #<\n", "identities.static[0].home", "not an absolute path"},

		// [cells]
		{"backend unknown", "[cells]\nbackend = \"cgroup3\" #<\n", "cells.backend", "not one of"},
		{"root escapes", "[cells]\nroot = \"../system.slice\" #<\n", "cells.root", "not a relative cgroup name"},
		{"root absolute", "[cells]\nroot = \"/suserve\" #<\n", "cells.root", "not a relative cgroup name"},
		{"root is an interface file", "[cells]\nroot = \"cgroup.procs\" #<\n", "cells.root", "not a relative cgroup name"},
		{"cell_memory too small", "[cells]\ncell_memory = \"1MiB\" #<\n", "cells.cell_memory", "below the minimum of 4MiB"},
		{"budget below cell_memory", "[cells]\nbudget = \"128MiB\" #<\n", "cells.budget", "budget 128MiB is smaller than cell_memory 256MiB"},
		{"budget bad size", "[cells]\nbudget = \"4GB\" #<\n", "cells.budget", `ambiguous; write "GiB"`},
		{"budget negative integer", "[cells]\nbudget = -1 #<\n", "cells.budget", "smaller than cell_memory"},
		{"cell_pids zero", "[cells]\ncell_pids = 0 #<\n", "cells.cell_pids", "at least 1 process"},
		{"cpu weight zero", "[cells]\ncell_cpu_weight = 0 #<\n", "cells.cell_cpu_weight", "outside 1..10000"},
		{"cpu weight too large", "[cells]\ncell_cpu_weight = 10001 #<\n", "cells.cell_cpu_weight", "outside 1..10000"},
		{"cell_max_requests negative", "[cells]\ncell_max_requests = -1 #<\n", "cells.cell_max_requests", "negative"},
		{"idle_evict bare number", "[cells]\nidle_evict = 300 #<\n", "cells.idle_evict", `needs a unit, e.g. "300s"`},
		{"queue_timeout negative", "[cells]\nqueue_timeout = \"-1s\" #<\n", "cells.queue_timeout", "must not be negative"},

		// [cgi]
		{"header_timeout zero", "[cgi]\nheader_timeout = \"0s\" #<\n", "cgi.header_timeout", "more than 0"},
		{"idle_timeout zero", "[cgi]\nidle_timeout = \"0s\" #<\n", "cgi.idle_timeout", "more than 0"},
		{"max_request_body zero", "[cgi]\nmax_request_body = 0 #<\n", "cgi.max_request_body", "more than 0"},
		{"pass_env bad name", "[cgi]\npass_env = [\"LANG\", \"1X\"] #<\n", "cgi.pass_env", `"1X" is not an environment variable name`},
		{"pass_env HTTP_", "[cgi]\npass_env = [\"HTTP_PROXY\"] #<\n", "cgi.pass_env", "HTTP_* names"},
		{"pass_env meta-variable", "[cgi]\npass_env = [\"PATH\"] #<\n", "cgi.pass_env", "set by suserve"},
		{"document_root relative", "[cgi]\ndocument_root = \"www\" #<\n", "cgi.document_root", "not an absolute path"},
		{"document_root with {home}", "[cgi]\ndocument_root = \"{home}/www\" #<\n", "cgi.document_root", "{home} is allowed only"},

		// [[route]]
		{"route path missing", "[[route]] #<\ndir = \"/srv\"\n", "route[0].path", "is required"},
		{"route path relative", "[[route]]\npath = \"cgi-bin/\" #<\ndir = \"/srv\"\n", "route[0].path", "start and end with"},
		{"route path without slash", "[[route]]\npath = \"/cgi-bin\" #<\ndir = \"/srv\"\n", "route[0].path", "start and end with"},
		{"route path not clean", "[[route]]\npath = \"/a//b/\" #<\ndir = \"/srv\"\n", "route[0].path", "not a clean path"},
		{"route path dotdot", "[[route]]\npath = \"/a/../b/\" #<\ndir = \"/srv\"\n", "route[0].path", "not a clean path"},
		{"route path space", "[[route]]\npath = \"/a b/\" #<\ndir = \"/srv\"\n", "route[0].path", "contains a space"},
		{"owner path without user", "[[route]]\npath = \"/users/cgi-bin/\" #<\ndir = \"{home}/cgi-bin\"\nrun_as = \"owner\"\n", "route[0].path", "{user} exactly once"},
		{"user placeholder in self route", "[[route]]\npath = \"/~{user}/\" #<\ndir = \"/srv\"\n", "route[0].path", "only with run_as = \"owner\""},
		{"unknown placeholder in path", "[[route]]\npath = \"/{site}/\" #<\ndir = \"/srv\"\n", "route[0].path", "only placeholder"},
		{"route dir missing", "[[route]] #<\npath = \"/a/\"\n", "route[0].dir", "is required"},
		{"route dir relative", "[[route]]\npath = \"/a/\"\ndir = \"srv/a\" #<\n", "route[0].dir", "not an absolute path"},
		{"home in self route dir", "[[route]]\npath = \"/a/\"\ndir = \"{home}/a\" #<\n", "route[0].dir", "{home} is allowed only with run_as = \"owner\""},
		{"user in self route dir", "[[route]]\npath = \"/a/\"\ndir = \"/srv/{user}\" #<\n", "route[0].dir", "{user} is allowed only"},
		{"unknown placeholder in dir", "[[route]]\npath = \"/a/\"\ndir = \"/srv/{site}\" #<\n", "route[0].dir", "unknown placeholder"},
		{"route dir dotdot", "[[route]]\npath = \"/a/\"\ndir = \"{state}/../etc\" #<\n", "route[0].dir", `contains ".."`},
		{"run_as unknown", "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = \"root\" #<\n", "route[0].run_as", "not one of"},
		{"authenticated without auth", "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = \"authenticated\" #<\n", "route[0].run_as", "needs [auth] mode"},
		{"anonymous with self", "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nanonymous = \"nobody\" #<\n", "route[0].anonymous", "only with run_as = \"authenticated\""},
		{"anonymous invalid", basicAuth + "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = \"authenticated\"\nanonymous = \"no body\" #<\n", "route[0].anonymous", "not a valid user name"},
		{"anonymous not in static table", basicAuth + staticIDs + "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = \"authenticated\"\nanonymous = \"guest\" #<\n", "route[0].anonymous", "not in [[identities.static]]"},
		{"account missing", "[[route]] #<\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = \"account\"\n", "route[0].account", "required with run_as = \"account\""},
		{"account with self", "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\naccount = \"wiki\" #<\n", "route[0].account", "only with run_as = \"account\""},
		{"account not in static table", staticIDs + "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = \"account\"\naccount = \"wiki\" #<\n", "route[0].account", "not in [[identities.static]]"},
		{"route run_as wrong type", "[[route]]\npath = \"/a/\"\ndir = \"/srv\"\nrun_as = 1 #<\n", "route[0].run_as", "expected a string"},
		{"two routes, one path", selfRoute + "[[route]]\npath = \"/cgi-bin/\" #<\ndir = \"/srv/other\"\n", "route[1].path", `already used by route[0] (line 1)`},
		{"route and app, one path", "[[route]]\npath = \"/wiki/\"\ndir = \"/srv\"\n" + "[[app]]\npath = \"/wiki/\" #<\nprotocol = \"http\"\ncommand = [\"/bin/w\"]\naccount = \"wiki\"\n", "app[0].path", "already used by route[0]"},

		// [[app]]
		{"app path bad", "[[app]]\npath = \"/wiki\" #<\nprotocol = \"http\"\ncommand = [\"/bin/w\"]\naccount = \"wiki\"\n", "app[0].path", "start and end with"},
		{"app path with user", "[[app]]\npath = \"/~{user}/\" #<\nprotocol = \"http\"\ncommand = [\"/bin/w\"]\naccount = \"wiki\"\n", "app[0].path", "only with run_as = \"owner\""},
		{"app protocol missing", "[[app]] #<\npath = \"/w/\"\ncommand = [\"/bin/w\"]\naccount = \"wiki\"\n", "app[0].protocol", "is required"},
		{"app protocol unknown", "[[app]]\npath = \"/w/\"\nprotocol = \"grpc\" #<\ncommand = [\"/bin/w\"]\naccount = \"wiki\"\n", "app[0].protocol", "not one of"},
		{"app dir relative", wikiAppTop + "dir = \"srv/wiki\" #<\n", "app[0].dir", "not an absolute path"},
		{"app command missing", "[[app]] #<\npath = \"/w/\"\nprotocol = \"http\"\naccount = \"wiki\"\n", "app[0].command", "is required"},
		{"app command empty", "[[app]]\npath = \"/w/\"\nprotocol = \"http\"\naccount = \"wiki\"\ncommand = [] #<\n", "app[0].command", "is required"},
		{"app command relative", "[[app]]\npath = \"/w/\"\nprotocol = \"http\"\naccount = \"wiki\"\ncommand = [\"php-cgi\"] #<\n", "app[0].command", `"php-cgi" is not an absolute path`},
		{"app run_as owner", wikiAppTop + "run_as = \"owner\" #<\n", "app[0].run_as", `not one of "account", "authenticated"`},
		{"app authenticated without auth", "[[app]]\npath = \"/w/\"\nprotocol = \"http\"\ncommand = [\"/bin/w\"]\nrun_as = \"authenticated\" #<\n", "app[0].run_as", "needs [auth] mode"},
		{"app account missing", "[[app]] #<\npath = \"/w/\"\nprotocol = \"http\"\ncommand = [\"/bin/w\"]\n", "app[0].account", "required with run_as = \"account\""},
		{"app account with authenticated", basicAuth + "[[app]]\npath = \"/w/\"\nprotocol = \"http\"\ncommand = [\"/bin/w\"]\nrun_as = \"authenticated\"\naccount = \"wiki\" #<\n", "app[0].account", "only with run_as = \"account\""},
		{"app workers zero", wikiAppTop + "workers = 0 #<\n", "app[0].workers", "outside 1..64"},
		{"app workers too many", wikiAppTop + "workers = 65 #<\n", "app[0].workers", "outside 1..64"},
		{"app concurrency zero", wikiAppTop + "concurrency = 0 #<\n", "app[0].concurrency", "outside 1..1024"},
		{"app concurrency too many", wikiAppTop + "concurrency = 1025 #<\n", "app[0].concurrency", "outside 1..1024"},
		{"app start_timeout zero", wikiAppTop + "start_timeout = \"0s\" #<\n", "app[0].start_timeout", "more than 0"},
		{"app idle_stop bare number", wikiAppTop + "idle_stop = 600 #<\n", "app[0].idle_stop", "needs a unit"},
		{"app max_queue negative", wikiAppTop + "max_queue = -1 #<\n", "app[0].max_queue", "negative"},
		{"app env without value", wikiAppTop + "env = [\"A=1\", \"NOVALUE\"] #<\n", "app[0].env", `"NOVALUE" is not KEY=VALUE`},
		{"app env bad name", wikiAppTop + "env = [\"1A=1\"] #<\n", "app[0].env", "not an environment variable name"},
		{"app env twice", wikiAppTop + "env = [\"A=1\", \"A=2\"] #<\n", "app[0].env", `"A" is set twice`},
		{"second app located", wikiAppTop + "[[app]]\npath = \"/svc/\"\nprotocol = \"http\"\ncommand = [\"/bin/svc\"]\naccount = \"svc\"\nworkers = 100 #<\n", "app[1].workers", "outside 1..64"},

		// the schema
		{"unknown key", "[cells]\nbudgett = \"1GiB\" #<\n", "cells.budgett", `did you mean "budget"?`},
		{"unknown key in route", selfRoute + "[[route]]\npath = \"/b/\"\ndir = \"/srv/b\"\nrunas = \"self\" #<\n", "route[1].runas", `did you mean "run_as"?`},
		{"unknown table", "[sever] #<\nlisten = \"127.0.0.1:1\"\n", "sever", `unknown table; did you mean "server"?`},
		{"unknown top-level key", "listen = \"127.0.0.1:1\" #<\n", "listen", "unknown key"},
		{"table given a scalar", "cells = 5 #<\n", "cells", "expected a table"},
		{"routes given a scalar", "route = \"/cgi-bin/\" #<\n", "route", "expected [[route]] tables"},
		{"array of tables for a table", "[[server]] #<\nlisten = \"127.0.0.1:1\"\n", "server", "write [server], not [[server]]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := markerLine(t, tc.doc)
			_, err := Parse([]byte(tc.doc), "rule.toml")
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Parse = %v; want Problems", err)
			}
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), err)
			}
			p := ps[0]
			if p.File != "rule.toml" || p.Line != line || p.Key != tc.key || !strings.Contains(p.Msg, tc.msg) {
				t.Errorf("problem = %q\nwant rule.toml:%d: %s: ...%s...", p.Error(), line, tc.key, tc.msg)
			}
		})
	}
}

// Documents that exercise every rule's allowed side parse cleanly.
func TestValidConfigurationsParse(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"admin on another port", "[server]\nlisten = \":8080\"\nadmin_listen = \"[::1]:8081\"\nserver_name = \"www.example.org\"\nstate_dir = \"/var/lib/suserve\"\nlog_format = \"json\"\n"},
		{"both listeners on port 0", "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n"},
		{"proxy auth", "[auth]\nmode = \"proxy\"\nproxy_header = \"X-Remote-User\"\nproxy_trusted = [\"10.0.0.0/8\", \"::1\"]\n"},
		{"rate limiting off", "[auth]\nfail_rate = 0.0\nfail_burst = 0\n"},
		{"integer fail_rate", "[auth]\nfail_rate = 5\n"},
		{"static identities", staticIDs + "groups = [61010]\nhome = \"/home/alice\"\n" + "[[route]]\npath = \"/~{user}/cgi-bin/\"\ndir = \"{home}/public_html/cgi-bin\"\nrun_as = \"owner\"\n"},
		{"account route on static table", staticIDs + "[[route]]\npath = \"/a/\"\ndir = \"{state}/a\"\nrun_as = \"account\"\naccount = \"alice\"\n"},
		{"authenticated with anonymous", basicAuth + "[[route]]\npath = \"/\"\ndir = \"/srv/cgi\"\nrun_as = \"authenticated\"\nanonymous = \"nobody\"\n"},
		{"size as integer bytes", "[cells]\nbudget = 1073741824\ncell_memory = 268435456\n"},
		{"budget equals cell_memory", "[cells]\nbudget = \"256MiB\"\n"},
		{"no cell limit and no queue", "[cells]\ncell_max_requests = 0\nqueue_timeout = \"0s\"\nidle_evict = \"0s\"\nbackend = \"none\"\nroot = \"suserve-2/cells\"\n"},
		{"bare zero duration", "[cells]\nidle_evict = 0\n"},
		{"pass_env", "[cgi]\npass_env = [\"LANG\", \"TZ\"]\ndocument_root = \"{state}/htdocs\"\n"},
		{"authenticated app pools", basicAuth + "[[app]]\npath = \"/lab/\"\nprotocol = \"http\"\ncommand = [\"/usr/bin/lab\", \"--socket\"]\nrun_as = \"authenticated\"\nworkers = 64\nenv = [\"A=1\", \"B=x=y\"]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.doc), "ok.toml"); err != nil {
				t.Errorf("Parse:\n%v", err)
			}
		})
	}
}

func TestProblemWithoutLineOrKey(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "f", Line: 3, Key: "a.b", Msg: "m"}, "f:3: a.b: m"},
		{Problem{File: "f", Line: 3, Msg: "syntax error: x"}, "f:3: syntax error: x"},
		{Problem{File: "f", Key: "cells.budget", Msg: "m"}, "f: cells.budget: m"},
	} {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
}

func TestDefaultValuesAreBlamedOnTheirTable(t *testing.T) {
	// cell_memory is set, the budget is the default: the problem names
	// cells.budget, at the [cells] line, since budget is not written.
	doc := "[server]\nlisten = \"127.0.0.1:1\"\n[cells] #<\ncell_memory = \"8GiB\"\n"
	_, err := Parse([]byte(doc), "d.toml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != 3 || ps[0].Key != "cells.budget" {
		t.Fatalf("Parse = %v; want d.toml:3: cells.budget: ...", err)
	}
}

func TestManyProblemsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("[server]\n")
	for i := range 150 {
		b.WriteString("bogus")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(" = 1\n")
	}
	_, err := Parse([]byte(b.String()), "many.toml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != maxProblems+1 || !strings.Contains(ps[maxProblems].Msg, "50 more problems") {
		t.Fatalf("got %d problems; want %d and a count of the rest", len(ps), maxProblems+1)
	}
}
