package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzConfig feeds arbitrary bytes to Parse. It must never panic; a refusal
// is Problems naming the file, with lines inside the document; an accepted
// configuration is valid (at least one cell fits) and summarises.
func FuzzConfig(f *testing.F) {
	f.Add(DefaultTOML())
	f.Add([]byte(minimal))
	f.Add([]byte("[server]\nlisten = \"127.0.0.1:8080\"\nlistn = \"x\"\n[cells]\nbudget = \"4 gigs\"\n[[route]]\npath = \"/cgi-bin/\"\ndir = \"/srv\"\nrun_as = \"root\"\n"))
	f.Add([]byte(basicAuth + staticIDs + "groups = [61010]\nhome = \"/home/alice\"\n[[route]]\npath = \"/~{user}/cgi-bin/\"\ndir = \"{home}/public_html/cgi-bin\"\nrun_as = \"owner\"\n"))
	f.Add([]byte(wikiAppTop + "workers = 2\nidle_stop = \"10m\"\nenv = [\"A=1\"]\n"))
	f.Add([]byte("server = { listen = \"127.0.0.1:1\", bogus = 1 }\nroute = [ { path = \"/a/\", dir = \"/srv/a\" }, { path = \"/b/\", run_as = 3 } ]\n"))
	f.Add([]byte("[cells]\nbudget = 1.5\nidle_evict = 30\ncell_memory = true\n[[server]]\n[identities]\nuid_min = -1\n"))
	f.Add([]byte("[server]\nlisten = \"127.0.0.1:8080\n"))
	f.Add([]byte("a.b.c = 1\n[x.y]\n[[x.y.z]]\n\"q.k\" = 'v'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.toml")
		if err != nil {
			var ps Problems
			if !errors.As(err, &ps) || len(ps) == 0 {
				t.Fatalf("error %v (%T) is not Problems", err, err)
			}
			lines := strings.Count(string(data), "\n") + 1
			for _, p := range ps {
				if p.File != "fuzz.toml" || p.Line < 0 || p.Line > lines || p.Msg == "" {
					t.Fatalf("bad problem %+v for a %d-line document", p, lines)
				}
			}
			return
		}
		if cfg.Cells.Capacity() < 1 {
			t.Fatalf("accepted a configuration with capacity %d", cfg.Cells.Capacity())
		}
		if cfg.Summary() == "" {
			t.Fatal("empty summary")
		}
	})
}
