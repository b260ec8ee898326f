package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/suserve/suserve/internal/config"
)

// The app rows: a persistent hello worker behind suserve, over FastCGI and
// over HTTP on its unix socket, each compared with a plain net/http hello
// server (no proxy) measured at the same connection count in the same run.
// The workers run as benchUID with no cells, so the rows measure the
// proxying, not the spawning. Root only: workers run as another identity.

// Each app has one worker, the default, as the proxy reference has. The Go
// FastCGI worker serves each connection on its own, so it is given many
// requests at once (concurrency), as an HTTP worker is by default. On a
// small host more workers than needed cost throughput: each mostly idle Go
// process pays its own wake-ups.
const (
	appWorkers         = 1
	fastcgiConcurrency = 64
)

var (
	appFastCGIRow = fmt.Sprintf("app fastcgi hello via suserve (%d worker, concurrency %d)", appWorkers, fastcgiConcurrency)
	appHTTPRow    = fmt.Sprintf("app http hello via suserve (%d worker)", appWorkers)
	appPrivsepRow = fmt.Sprintf("app http hello via suserve with privilege separation (%d worker)", appWorkers)
)

const fcgiHelloSrc = `package main

import (
	"net/http"
	"net/http/fcgi"
)

func main() {
	fcgi.Serve(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello\n"))
	}))
}
`

const httpHelloSrc = `package main

import (
	"net"
	"net/http"
	"os"
)

func main() {
	ln, err := net.FileListener(os.NewFile(3, "socket"))
	if err != nil {
		panic(err)
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello\n"))
	}))
}
`

func helloHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("hello\n"))
}

// buildGo builds the single-file program src into dir/name, root-owned and
// not writable by others, as an app's command must be.
func buildGo(dir, name, src string) (string, error) {
	file := filepath.Join(dir, name+".go")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", name, err, b)
	}
	return out, os.Chmod(out, 0o755)
}

// appRows measures the app rows at each connection count.
func appRows(dir string, conns []int, d time.Duration) ([]row, error) {
	if !rowFilter.MatchString(appFastCGIRow) && !rowFilter.MatchString(appHTTPRow) && !rowFilter.MatchString(appPrivsepRow) {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: app rows skipped: workers run as uid", benchUID, "which needs root")
		return nil, nil
	}
	adir := filepath.Join(dir, "apps")
	if err := os.Mkdir(adir, 0o755); err != nil {
		return nil, err
	}
	fcgiBin, err := buildGo(adir, "fcgihello", fcgiHelloSrc)
	if err != nil {
		return nil, err
	}
	httpBin, err := buildGo(adir, "httphello", httpHelloSrc)
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "apps-state")
	if err := os.Mkdir(state, 0o700); err != nil {
		return nil, err
	}
	cfg, err := config.Parse([]byte(benchIdentities+fmt.Sprintf(`
[cells]
backend = "none"

[[app]]
path = "/f/"
protocol = "fastcgi"
command = [%q]
run_as = "account"
account = "bench"
workers = %d
concurrency = %d
`, fcgiBin, appWorkers, fastcgiConcurrency)+httpApp(httpBin)), "(bench apps)")
	if err != nil {
		return nil, err
	}
	su, err := serveConfig("suserve", cfg, state, "")
	if err != nil {
		return nil, err
	}
	defer su.stop()
	direct, err := serve("direct", http.HandlerFunc(helloHandler), "/hello")
	if err != nil {
		return nil, err
	}
	defer direct.stop()
	// The proxy reference: the standard library's ReverseProxy in this
	// process, in front of one hello worker on a unix socket. It is the
	// least any proxy to a worker process costs here, so the app rows are
	// also compared with it.
	ref, stopRef, err := proxyReference(adir, httpBin)
	if err != nil {
		return nil, err
	}
	defer stopRef()
	// The same HTTP app served by suserve started as root: its front
	// proxies, its spawner started the workers.
	ps, err := startPrivsep(dir, filepath.Join(dir, "privsep"), "/h/hello", "none", httpApp(httpBin))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", appPrivsepRow, err)
	}
	defer ps.stop()
	var targets []struct{ name, url string }
	for _, t := range []struct{ name, url string }{
		{appFastCGIRow, su.url + "/f/hello"},
		{appHTTPRow, su.url + "/h/hello"},
		{appPrivsepRow, ps.url},
	} {
		if rowFilter.MatchString(t.name) {
			targets = append(targets, t)
		}
	}
	// The first request of each app starts its workers: not measured.
	for _, t := range append(targets, struct{ name, url string }{ref.name, ref.url}) {
		resp, err := http.Get(t.url)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "hello\n" {
			return nil, fmt.Errorf("%s: %d %q", t.name, resp.StatusCode, b)
		}
	}
	var rows []row
	for _, c := range conns {
		res, err := load(direct.url, c, d, nil)
		if err != nil {
			return nil, fmt.Errorf("direct hello: %w", err)
		}
		base := new(loadResult)
		*base = res
		rows = append(rows, row{name: "direct net/http hello (app baseline)", conns: c, res: res})
		if res, err = load(ref.url, c, d, nil); err != nil {
			return nil, fmt.Errorf("proxy reference: %w", err)
		}
		refRes := new(loadResult)
		*refRes = res
		rows = append(rows, row{name: ref.name + " vs direct", conns: c, res: res, base: base})
		for _, t := range targets {
			res, err := load(t.url, c, d, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			rows = append(rows, row{name: t.name + " vs direct", conns: c, res: res, base: base})
			rows = append(rows, row{name: t.name + " vs proxy reference", conns: c, res: res, base: refRes})
		}
	}
	return rows, nil
}

// httpApp is the configuration of the HTTP hello app at /h/, run by bin.
func httpApp(bin string) string {
	return fmt.Sprintf(`
[[app]]
path = "/h/"
protocol = "http"
command = [%q]
run_as = "account"
account = "bench"
workers = %d
`, bin, appWorkers)
}

// proxyReference starts bin (the HTTP hello worker) with a listening unix
// socket as descriptor 3, as suserve starts an HTTP app's worker, and serves
// an httputil.ReverseProxy to it.
func proxyReference(dir, bin string) (target, func(), error) {
	sock := filepath.Join(dir, "reference.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return target{}, nil, err
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // the worker's copy goes on listening
	lf, err := ul.File()
	ln.Close()
	if err != nil {
		return target{}, nil, err
	}
	cmd := exec.Command(bin)
	cmd.ExtraFiles = []*os.File{lf}
	err = cmd.Start()
	lf.Close()
	if err != nil {
		return target{}, nil, err
	}
	rp := &httputil.ReverseProxy{
		ErrorLog: log.New(io.Discard, "", 0),
		Rewrite:  func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "worker" },
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 256,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		},
	}
	t, err := serve("stdlib ReverseProxy to one http hello worker (proxy reference)", rp, "/hello")
	stop := func() {
		if t.stop != nil {
			t.stop()
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if err != nil {
		stop()
		return target{}, nil, err
	}
	return t, stop, nil
}
