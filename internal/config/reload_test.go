package config

import (
	"slices"
	"testing"
)

func TestRestartKeysNameWhatAReloadCannotApply(t *testing.T) {
	base := `[server]
listen = "127.0.0.1:8080"

[cells]
backend = "none"

[[route]]
path = "/cgi-bin/"
dir = "/srv/cgi-bin"
`
	running, err := Parse([]byte(base), "a.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"routes, cgi and diagnostics change", base + `
[[route]]
path = "/more/"
dir = "/srv/more"

[cgi]
header_timeout = "5s"
`, nil},
		{"listener and cells change", `[server]
listen = "127.0.0.1:9090"

[cells]
backend = "cgroup1"

[[route]]
path = "/cgi-bin/"
dir = "/srv/cgi-bin"
`, []string{"server.listen", "cells"}},
		{"identities change", base + `
[identities]
uid_min = 2000
`, []string{"identities"}},
	} {
		next, err := Parse([]byte(tc.text), "b.toml")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := RestartKeys(running, next); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
