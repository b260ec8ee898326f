package main

import (
	"fmt"
	"path/filepath"

	"github.com/suserve/suserve/internal/config"
)

// suserveRows serves prog through suserve's whole stack (routing, request
// ids, access log to a discarding logger, the CGI gateway, the launcher),
// configured as an operator would.
func suserveRows(dir, prog string) ([]target, error) {
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[server]
listen = "127.0.0.1:0"

[[route]]
path = "/cgi-bin/"
dir = %q
`, filepath.Dir(prog))), "(bench)")
	if err != nil {
		return nil, err
	}
	t, err := serveConfig("suserve", cfg, dir, "/cgi-bin/"+filepath.Base(prog))
	if err != nil {
		return nil, err
	}
	return []target{t}, nil
}
