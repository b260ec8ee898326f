package fcgi_test

import (
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suserve/suserve/internal/fcgi"
)

const phpScript = `<?php
header("X-Fcgi-Test: yes");
$body = file_get_contents("php://input");
error_log("stderr from php");
printf("uid=%d method=%s len=%d md5=%s q=%s", posix_geteuid(), $_SERVER["REQUEST_METHOD"], strlen($body), md5($body), $_GET["q"] ?? "");
`

// startPHP runs Debian's php-cgi the way suserve runs a FastCGI worker: the
// listening socket is its descriptor 0 (FCGI_LISTENSOCK_FILENO, FastCGI 1.0
// §2.2), so it needs no address of its own. It returns the socket's path
// and the document root.
func startPHP(t *testing.T) (sock, docroot string) {
	t.Helper()
	bin, err := exec.LookPath("php-cgi")
	if err != nil {
		t.Skip("php-cgi is not installed (Debian: apt-get install php-cgi; CI installs it)")
	}
	dir := t.TempDir()
	docroot = filepath.Join(dir, "www")
	if err := os.Mkdir(docroot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(docroot, "index.php"), []byte(phpScript), 0o644); err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "php.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	lf, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // the worker holds the socket now; the path stays
	defer lf.Close()
	var stderr strings.Builder
	cmd := exec.Command(bin)
	cmd.Stdin = lf
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PHP_FCGI_CHILDREN=0"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("php-cgi stderr: %s", stderr.String())
		}
	})
	return sock, docroot
}

func phpParams(docroot, method, query string, bodyLen int) []fcgi.Param {
	return cgiParams(method, "/index.php?"+query, int64(bodyLen),
		fcgi.Param{Name: "SCRIPT_NAME", Value: "/index.php"},
		fcgi.Param{Name: "SCRIPT_FILENAME", Value: filepath.Join(docroot, "index.php")},
		fcgi.Param{Name: "DOCUMENT_ROOT", Value: docroot},
		fcgi.Param{Name: "QUERY_STRING", Value: query},
		fcgi.Param{Name: "CONTENT_TYPE", Value: "application/octet-stream"},
		// php-cgi refuses requests without it (cgi.force_redirect), as
		// nginx's fastcgi_params documents.
		fcgi.Param{Name: "REDIRECT_STATUS", Value: "200"},
	)
}

func TestPHPScriptRunsUnderPHPCGI(t *testing.T) {
	sock, docroot := startPHP(t)
	p := fcgi.NewPool("unix", sock, 2)
	defer p.Close()

	vals, err := p.Values(testContext(t), "FCGI_MPXS_CONNS", "FCGI_MAX_CONNS")
	if err != nil {
		t.Fatalf("GET_VALUES probe: %v", err)
	}
	if vals["FCGI_MPXS_CONNS"] != "0" {
		t.Errorf("php-cgi values %q, want FCGI_MPXS_CONNS=0", vals)
	}

	body := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	tests := []struct {
		name   string
		method string
		query  string
		body   string
	}{
		{"GET with a query", "GET", "q=hello", ""},
		{"POST with a streamed 1 MiB body", "POST", "q=post", body},
		{"GET again over the kept connection", "GET", "q=again", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &fcgi.Request{Params: phpParams(docroot, tt.method, tt.query, len(tt.body))}
			if tt.body != "" {
				req.Stdin = strings.NewReader(tt.body)
			}
			var stderr []string
			req.Stderr = func(line string) { stderr = append(stderr, line) }
			out, err := roundTrip(testContext(t), p.Do, req)
			if err != nil {
				t.Fatal(err)
			}
			head, got, ok := strings.Cut(out, "\r\n\r\n")
			if !ok || !strings.Contains(head, "X-Fcgi-Test: yes") {
				t.Fatalf("stdout %q is not a CGI response with the script's header", out)
			}
			want := fmt.Sprintf("uid=%d method=%s len=%d md5=%x q=%s", os.Geteuid(), tt.method, len(tt.body), md5.Sum([]byte(tt.body)), strings.TrimPrefix(tt.query, "q="))
			if got != want {
				t.Errorf("body %q,\nwant %q", got, want)
			}
			if len(stderr) != 1 || !strings.Contains(stderr[0], "stderr from php") {
				t.Errorf("stderr %q, want the script's error_log line", stderr)
			}
		})
	}
	// One connection for the probe, one kept for the three requests.
	if s := p.Stats(); s.Dialed != 2 || s.Reused != 2 {
		t.Errorf("pool %+v, want the requests to share one kept connection", s)
	}
}

func TestPHPCGIMissingScriptIsAResponseNotAnError(t *testing.T) {
	sock, docroot := startPHP(t)
	c := dialConn(t, sock)
	params := phpParams(docroot, "GET", "", 0)
	for i := range params {
		if params[i].Name == "SCRIPT_FILENAME" {
			params[i].Value = filepath.Join(docroot, "missing.php")
		}
	}
	resp, err := c.Do(testContext(t), &fcgi.Request{Params: params})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	out, err := io.ReadAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "Status: 404") {
		t.Errorf("stdout %q, want php-cgi's 404", out)
	}
}
