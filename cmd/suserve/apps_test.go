package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/suserve/suserve/internal/config"
)

func TestPrivilegeSeparationRefusesAppsAtStartNamingTheLine(t *testing.T) {
	cfg, err := config.Parse([]byte(`[server]
listen = "127.0.0.1:0"

[identities]
source = "static"

[[identities.static]]
name = "wiki"
uid = 61003
gid = 61003

[[app]]
path = "/wiki/"
protocol = "fastcgi"
command = ["/usr/bin/php-cgi"]
run_as = "account"
account = "wiki"
`), "/etc/suserve/suserve.toml")
	if err != nil {
		t.Fatal(err)
	}
	err = runSpawner(context.Background(), cfg, "[server] listen", slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	if err == nil {
		t.Fatal("the spawner started with an [[app]] it cannot serve")
	}
	for _, want := range []string{"/etc/suserve/suserve.toml", "app /wiki/ (line 12)", "privilege separation"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
