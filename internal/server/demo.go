package server

import (
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/suserve/suserve/internal/auth"
	"github.com/suserve/suserve/internal/config"
)

//go:embed demo/cgi-bin demo/index.html
var demoFiles embed.FS

var frontTemplate = template.Must(template.ParseFS(demoFiles, "demo/index.html"))

// DemoIdentity is a demo user shown on the front page with its password.
type DemoIdentity struct {
	Name     string
	UID      uint32
	Password string
}

// Demo is the embedded demonstration: its programs and its front page.
type Demo struct {
	Self       string         // the user every program runs as, when not switching identities
	Identities []DemoIdentity // demo users, when switching identities
	Cells      string         // how programs are confined, one line
	Admin      string         // URL of the status page; "" = none
}

// WriteDemoPrograms writes the demo's programs into dir/cgi-bin, executable,
// replacing what a previous run left there.
func WriteDemoPrograms(dir string) error {
	bin := filepath.Join(dir, "cgi-bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("demo programs: %w", err)
	}
	entries, err := fs.ReadDir(demoFiles, "demo/cgi-bin")
	if err != nil {
		return err
	}
	for _, e := range entries {
		data, err := demoFiles.ReadFile("demo/cgi-bin/" + e.Name())
		if err != nil {
			return err
		}
		dst := filepath.Join(bin, e.Name())
		os.Remove(dst)
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			return fmt.Errorf("demo programs: %w", err)
		}
	}
	return nil
}

func (d *Demo) frontPage(s *Server) http.Handler {
	prefix := "/cgi-bin/"
	login := prefix
	if len(d.Identities) > 0 {
		login = "/login/cgi-bin/"
	}
	data := map[string]any{
		"Login":         login,
		"Self":          d.Self,
		"Identities":    d.Identities,
		"Cells":         d.Cells,
		"Admin":         d.Admin,
		"Prefix":        prefix,
		"HeaderTimeout": s.cfg.CGI.HeaderTimeout.String(),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		frontTemplate.Execute(w, data)
	})
}

// Demo identities when suserve starts as root: static, on uids no system
// account uses, so the demo never needs accounts created.
var demoUsers = []struct {
	name string
	uid  uint32
}{{"guest", 61000}, {"alice", 61001}, {"bob", 61002}}

// RootDemo is the demo configuration for a server started as root: static
// identities alice and bob with random passwords (written to an htpasswd
// file in state), the demo programs under /cgi-bin/ run as the anonymous
// guest or the logged-in user, and /login/cgi-bin/ asking for a login. It
// is written to state/demo.toml, which the unprivileged front reads:
// frontUser is its [server] user.
func RootDemo(state string, base *config.Config, frontUser string) (*config.Config, []DemoIdentity, error) {
	htpasswd := filepath.Join(state, "htpasswd")
	var ids []DemoIdentity
	var static strings.Builder
	for _, u := range demoUsers {
		fmt.Fprintf(&static, "[[identities.static]]\nname = %q\nuid = %d\ngid = %d\nhome = %q\n\n", u.name, u.uid, u.uid, "/nonexistent")
		if u.name == "guest" {
			continue
		}
		pw := randomPassword()
		if err := auth.SetPassword(htpasswd, u.name, []byte(pw), bcrypt.DefaultCost); err != nil {
			return nil, nil, fmt.Errorf("demo users: %w", err)
		}
		ids = append(ids, DemoIdentity{Name: u.name, UID: u.uid, Password: pw})
	}
	text := fmt.Sprintf(`# The demo suserve serves when started as root with no -config.
[server]
listen = %q
admin_listen = %q
diagnostics = "client"
state_dir = %q
user = %q

[auth]
mode = "basic"
htpasswd = %q

[identities]
source = "static"

%s
[cgi]
header_timeout = %q

[[route]]
path = "/cgi-bin/"
dir = "{state}/cgi-bin"
run_as = "authenticated"
anonymous = "guest"

[[route]]
path = "/login/cgi-bin/"
dir = "{state}/cgi-bin"
run_as = "authenticated"
`, base.Server.Listen, base.Server.AdminListen, state, frontUser, htpasswd, static.String(), base.CGI.HeaderTimeout.String())
	file := filepath.Join(state, "demo.toml")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		return nil, nil, fmt.Errorf("demo configuration: %w", err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		return nil, nil, err
	}
	// The identities must reach the programs: the state directory is
	// traversable, the programs stay root's and unwritable by others.
	if err := os.Chmod(state, 0o711); err != nil {
		return nil, nil, err
	}
	return cfg, ids, nil
}

// DemoUsers are the demo users of a root demo configuration, for the
// front page (without their passwords, which were printed at start).
func DemoUsers(cfg *config.Config) []DemoIdentity {
	var out []DemoIdentity
	for _, s := range cfg.Identities.Static {
		if s.Name != "guest" {
			out = append(out, DemoIdentity{Name: s.Name, UID: s.UID})
		}
	}
	return out
}

func randomPassword() string {
	b := make([]byte, 9)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
