package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/suserve/suserve/internal/auth"
)

// authenticatedRow serves the hello program in authenticated mode: every
// request carries HTTP Basic credentials checked against an htpasswd file
// at bcrypt's default cost (about 60 ms a check here), so the row shows
// what the verified-credential cache leaves of that cost when warm. The
// program, in a root-owned directory, runs as the user who authenticated;
// cells are off so that the row isolates authentication (the cells rows
// show their own cost).
func authenticatedRow(dir, prog string) (target, error) {
	adir := filepath.Join(dir, "auth")
	if err := os.Mkdir(adir, 0o755); err != nil {
		return target{}, err
	}
	b, err := os.ReadFile(prog)
	if err != nil {
		return target{}, err
	}
	if err := os.WriteFile(filepath.Join(adir, "hello"), b, 0o755); err != nil {
		return target{}, err
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	const user, password = "bench", "bench-password"
	if err := auth.SetPassword(htpasswd, user, []byte(password), bcrypt.DefaultCost); err != nil {
		return target{}, err
	}
	config := func(addr string) string {
		text := strings.Replace(privsepConfig(addr, adir, "suserve-bench-auth", "none"), `run_as = "account"
account = "bench"`, `run_as = "authenticated"`, 1)
		return strings.Replace(text, "[identities]", fmt.Sprintf("[auth]\nmode = \"basic\"\nhtpasswd = %q\n\n[identities]", htpasswd), 1)
	}
	header := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}}
	return startChild("suserve in-process, authenticated (warm cache), cells none", dir, "auth", "/cgi-bin/hello", header, config, inProcessCommand(dir))
}
