package cgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readEnv parses the env fixture's NUL-separated output.
func readEnv(t *testing.T, resp *http.Response) map[string]string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestMetaVariablesDescribeTheRequest(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", tls), func(t *testing.T) {
			s := newTestServer(t, tls, func(h *Handler) { h.PassEnv = []string{"SUSERVE_TEST_PASSED", "QUERY_STRING", "HTTP_X_FORGED"} })
			const uri = "/cgi-bin/env/a%20b/c%3Fd%25e?x=1+2&y=%2B"
			req, _ := http.NewRequest(http.MethodPost, s.URL+uri, strings.NewReader("hello"))
			req.Header.Set("Content-Type", "text/plain; charset=utf-8")
			req.Header.Add("X-Multi", "a")
			req.Header.Add("X-Multi", "b")
			req.Header.Set("Authorization", "Basic YWxpY2U6c2VjcmV0")
			req.Header.Set("Proxy", "http://evil.example:3128")
			req.Header.Set("Proxy-Authorization", "Basic eA==")
			req.Header["X_Under"] = []string{"forged"}
			req.Header.Set("X-Test-User", "alice")
			env := readEnv(t, s.do(t, req, "meta"))

			u, _ := url.Parse(s.URL)
			root := filepath.Join(fixtures, "cgi-bin")
			docroot := filepath.Join(fixtures, "htdocs")
			want := map[string]string{
				"GATEWAY_INTERFACE":   "CGI/1.1",
				"SERVER_SOFTWARE":     "suserve-test",
				"SERVER_PROTOCOL":     "HTTP/1.1",
				"SERVER_NAME":         "127.0.0.1",
				"SERVER_PORT":         u.Port(),
				"REQUEST_METHOD":      "POST",
				"REQUEST_URI":         uri,
				"QUERY_STRING":        "x=1+2&y=%2B",
				"SCRIPT_NAME":         "/cgi-bin/env",
				"SCRIPT_FILENAME":     filepath.Join(root, "env"),
				"PATH_INFO":           "/a b/c?d%e",
				"PATH_TRANSLATED":     docroot + "/a b/c?d%e",
				"DOCUMENT_ROOT":       docroot,
				"REMOTE_ADDR":         "127.0.0.1",
				"REMOTE_HOST":         "127.0.0.1",
				"REMOTE_USER":         "alice",
				"AUTH_TYPE":           "Basic",
				"CONTENT_LENGTH":      "5",
				"CONTENT_TYPE":        "text/plain; charset=utf-8",
				"HTTP_X_MULTI":        "a, b",
				"HTTP_HOST":           u.Host,
				"SUSERVE_TEST_PASSED": "passed-on",
				"PATH":                "/usr/local/bin:/usr/bin:/bin",
			}
			if tls {
				want["HTTPS"] = "on"
			}
			for k, v := range want {
				if got, ok := env[k]; !ok || got != v {
					t.Errorf("%s = %q (set: %v), want %q", k, got, ok, v)
				}
			}
			if env["REMOTE_PORT"] == "" || strings.Trim(env["REMOTE_PORT"], "0123456789") != "" {
				t.Errorf("REMOTE_PORT = %q, want the client's port", env["REMOTE_PORT"])
			}
			for _, k := range []string{"HTTP_AUTHORIZATION", "HTTP_PROXY", "HTTP_PROXY_AUTHORIZATION", "HTTP_X_UNDER", "SUSERVE_TEST_SECRET", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_X_FORGED"} {
				if v, ok := env[k]; ok {
					t.Errorf("%s = %q must not reach the program", k, v)
				}
			}
			if !tls {
				if _, ok := env["HTTPS"]; ok {
					t.Errorf("HTTPS set on a plain connection")
				}
			}
		})
	}
}

func TestMetaVariablesWithoutPathInfoOrBody(t *testing.T) {
	s := newTestServer(t, false)
	env := readEnv(t, s.get(t, "/cgi-bin/env", "bare"))
	for _, k := range []string{"PATH_INFO", "PATH_TRANSLATED", "CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_USER", "AUTH_TYPE"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s = %q, want it unset (RFC 3875 §4.1)", k, v)
		}
	}
	if v, ok := env["QUERY_STRING"]; !ok || v != "" {
		t.Errorf("QUERY_STRING = %q (set: %v), want set and empty (RFC 3875 §4.1.7)", v, ok)
	}
}

// rawRequest sends a request line as written, so that no client library
// cleans or re-encodes its path.
func rawRequest(t *testing.T, s *testServer, target string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\nX-Request-Id: raw\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestScriptResolution(t *testing.T) {
	s := newTestServer(t, false)
	for _, tc := range []struct {
		name, target string
		status       int
		cause        Cause
		body         string
	}{
		{"dot-dot segment", "/cgi-bin/../cgi-bin/hello", 400, BadPath, ""},
		{"encoded dot-dot", "/cgi-bin/%2e%2e/cgi-bin/hello", 400, BadPath, ""},
		{"encoded slash", "/cgi-bin/sub%2Fprog", 400, BadPath, ""},
		{"NUL", "/cgi-bin/hello%00", 400, BadPath, ""},
		{"missing program", "/cgi-bin/nothing-here", 404, NoScript, ""},
		{"directory", "/cgi-bin/sub", 404, NoScript, ""},
		{"directory with slash", "/cgi-bin/emptydir/", 404, NoScript, ""},
		{"route itself", "/cgi-bin/", 404, NoScript, ""},
		{"outside the route", "/elsewhere", 404, NoScript, ""},
		{"program in a subdirectory, rest is path info", "/cgi-bin/sub/prog/x/y", 200, "", "/cgi-bin/sub/prog|/x/y\n"},
		{"doubled slash before the program", "/cgi-bin//sub/prog", 200, "", "/cgi-bin//sub/prog|\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, s, tc.target)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.cause != "" && !strings.Contains(string(body), "cause: "+string(tc.cause)) {
				t.Errorf("page %q does not name the cause %q", body, tc.cause)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
		})
	}
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ n, off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := p.off + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternSum(n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, &patternReader{n: n})
	return hex.EncodeToString(h.Sum(nil))
}

// hiddenLength hides a reader's type so that the client cannot know the
// length and sends the body chunked.
type hiddenLength struct{ io.Reader }

func vmStatus(t *testing.T, key string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

func TestUploadOf100MiBStreamsWithoutGrowingTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB upload")
	}
	s := newTestServer(t, false)
	const size = 100 << 20
	want := patternSum(size)
	// Warm up the request path, then reset the peak RSS (proc(5),
	// clear_refs "5") so that VmHWM measures this upload only.
	s.get(t, "/cgi-bin/hello", "warm").Body.Close()
	before := vmStatus(t, "VmRSS")
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("resetting the peak RSS: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/sha", &patternReader{n: size})
	req.ContentLength = size
	resp := s.do(t, req, "upload")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v: %s", resp.StatusCode, err, body)
	}
	if got := string(body); got != fmt.Sprintf("%d\n%s  -\n", size, want) {
		t.Fatalf("program saw %q, want length %d and sha256 %s", got, size, want)
	}
	peak := vmStatus(t, "VmHWM")
	if growth := peak - before; growth >= 16<<20 {
		t.Errorf("server RSS grew by %d MiB during a 100 MiB upload, want < 16 MiB", growth>>20)
	}
	t.Logf("RSS before %d KiB, peak during the upload %d KiB", before>>10, peak>>10)
}

func TestChunkedUploadIsSpooledWithContentLength(t *testing.T) {
	s := newTestServer(t, false)
	for _, size := range []int64{100, 100 << 10, 3 << 20} { // preloaded pipe, memory spool, file spool
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/sha", hiddenLength{&patternReader{n: size}})
			req.Header.Set("X-Expect-Chunked", "1")
			resp := s.do(t, req, "chunked")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d\n%s  -\n", size, patternSum(size)); string(body) != want {
				t.Fatalf("program saw %q, want %q", body, want)
			}
		})
	}
}

func TestProgramThatWritesBeforeReadingDoesNotDeadlock(t *testing.T) {
	s := newTestServer(t, false)
	const size = 1 << 20
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/writefirst", &patternReader{n: size})
	req.ContentLength = size
	resp := s.do(t, req, "writefirst")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := string(make([]byte, 1<<20)) + patternSum(size) + "  -\n"
	if string(body) != want {
		t.Fatalf("got %d bytes ending %q, want 1 MiB of zeros and the input's hash", len(body), body[max(0, len(body)-80):])
	}
}

func TestProgramThatNeverReadsItsInputAnswers(t *testing.T) {
	s := newTestServer(t, false)
	for _, size := range []int64{1 << 20, 100} {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/noread", &patternReader{n: size})
		req.ContentLength = size
		resp := s.do(t, req, "noread")
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "ignored your input\n" {
			t.Fatalf("size %d: status %d, %v, body %q", size, resp.StatusCode, err, body)
		}
		if size > pipeWriteSafe && !resp.Close {
			// The unread rest makes the server close the connection;
			// the client must be told before it reuses it.
			t.Errorf("size %d: no Connection: close with the body unread", size)
		}
		s.waitServed(t, "noread")
	}
}

func TestBodyOverTheLimitIs413BeforeAnyProgramRuns(t *testing.T) {
	s := newTestServer(t, false, func(h *Handler) { h.MaxRequestBody = 1000 })
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			var body io.Reader = strings.NewReader(strings.Repeat("x", 2000))
			if chunked {
				body = hiddenLength{body}
			}
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/marker?"+marker, body)
			resp := s.do(t, req, "toolarge")
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413: %s", resp.StatusCode, page)
			}
			s.waitServed(t, "toolarge")
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the program ran for a body over the limit")
			}
			if l := s.logs.failureLine(t, "toolarge"); l["cause"] != string(BodyTooLarge) {
				t.Errorf("log cause %v", l["cause"])
			}
			s.logs.buf.Reset()
		})
	}
}

// TestAnEnvironmentOverItsBoundsIsRefusedBeforeAnyProgramRuns: a URL or
// header fields that would make a variable or the whole environment
// larger than the bounds get 414 or 431, and no program runs; a request
// just under them is served whole.
func TestAnEnvironmentOverItsBoundsIsRefusedBeforeAnyProgramRuns(t *testing.T) {
	s := newTestServer(t, false)
	long := strings.Repeat("x", MaxEnvVar)
	part := strings.Repeat("y", 14<<10)
	many := http.Header{}
	for i := range MaxEnvVars {
		many.Set(fmt.Sprintf("X-%d", i), "v")
	}
	for _, tc := range []struct {
		name     string
		pathInfo string
		header   http.Header
		status   int
		cause    Cause
	}{
		{"a path over a variable's bound", "/" + long, nil, http.StatusRequestURITooLong, URITooLong},
		{"a header field over a variable's bound", "", http.Header{"Cookie": {long}}, http.StatusRequestHeaderFieldsTooLarge, HeadersLarge},
		{"header fields over the total", "", http.Header{"X-A": {part}, "X-B": {part}, "X-C": {part}, "X-D": {part}}, http.StatusRequestHeaderFieldsTooLarge, HeadersLarge},
		{"more header fields than variables", "", many, http.StatusRequestHeaderFieldsTooLarge, HeadersLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "ran")
			req, _ := http.NewRequest(http.MethodGet, s.URL+"/cgi-bin/marker"+tc.pathInfo+"?"+marker, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp := s.do(t, req, "big")
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, page)
			}
			s.waitServed(t, "big")
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the program ran")
			}
			if l := s.logs.failureLine(t, "big"); l["cause"] != string(tc.cause) {
				t.Errorf("log cause %v, want %q", l["cause"], tc.cause)
			}
			s.logs.buf.Reset()
		})
	}
	q := strings.Repeat("z", MaxEnvVar-100)
	if env := readEnv(t, s.get(t, "/cgi-bin/env?"+q, "under")); env["QUERY_STRING"] != q {
		t.Errorf("a query string just under the bound reached the program as %d bytes, want %d", len(env["QUERY_STRING"]), len(q))
	}
}

// TestTheServersOwnVariablesAreNotTheRequestsToBound: a pass_env value
// larger than a request may make its variables still reaches the program:
// the bounds are the request's, whatever the server adds.
func TestTheServersOwnVariablesAreNotTheRequestsToBound(t *testing.T) {
	big := strings.Repeat("b", MaxEnvTotal)
	t.Setenv("SUSERVE_TEST_BIG", big)
	s := newTestServer(t, false, func(h *Handler) { h.PassEnv = []string{"SUSERVE_TEST_BIG"} })
	if env := readEnv(t, s.get(t, "/cgi-bin/env", "big")); env["SUSERVE_TEST_BIG"] != big {
		t.Errorf("the pass_env variable reached the program as %d bytes, want %d", len(env["SUSERVE_TEST_BIG"]), len(big))
	}
}

// TestARequestOverTheBoundsIsAnsweredBeforeItsBodyIsRead sends header
// fields over the bounds with a chunked body that does not end until the
// answer has come: the 431 comes first, without the body spooled.
func TestARequestOverTheBoundsIsAnsweredBeforeItsBodyIsRead(t *testing.T) {
	s := newTestServer(t, false)
	pr, pw := io.Pipe()
	defer pw.Close()
	// Bounded, so that a server waiting for the body's end fails the test
	// rather than hanging it: the body then ends in an error.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/cgi-bin/env", pr)
	req.Header.Set("Cookie", strings.Repeat("c", MaxEnvVar))
	go pw.Write([]byte("the start of a body that goes on"))
	resp := s.do(t, req, "bodyless")
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

func TestFailuresAreDiagnosed(t *testing.T) {
	s := newTestServer(t, false, func(h *Handler) { h.Diagnostics = true })
	for _, tc := range []struct {
		program string
		status  int
		cause   Cause
		detail  string // in the log's detail and on the page
		stderr  string // in the log's stderr tail
	}{
		{"exit3", 502, Exited, "exited with status 3 before a complete header block (0 bytes of output)", "cannot open the database"},
		{"segv", 502, Signaled, "killed by signal segmentation fault", "about to crash"},
		{"silent", 502, Exited, "exited with status 0 before a complete header block", ""},
		{"malformed", 502, MalformedHeader, `line 1: "Content-Type text/plain": no colon`, ""},
		{"huge", 502, HeaderTooLarge, "more than 65536 bytes", ""},
		{"manylines", 502, HeaderTooLarge, "more than 65536 bytes", ""},
		{"notype", 502, MissingContentType, "neither Content-Type nor Location", ""},
		{"badstatus", 502, MalformedHeader, `"Status: abc"`, ""},
		{"noexec", 502, NotExecutable, "permission denied", ""},
		{"badinterp", 502, NotFound, "no such file", ""},
		{"noshebang", 502, ExecFormat, "exec format error", ""},
	} {
		t.Run(tc.program, func(t *testing.T) {
			id := "fail-" + tc.program
			resp := s.get(t, "/cgi-bin/"+tc.program, id)
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			s.waitServed(t, id)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			for _, want := range []string{fmt.Sprint(tc.status), "cause: " + string(tc.cause), "request id: " + id, tc.detail} {
				if !strings.Contains(string(page), want) {
					t.Errorf("page lacks %q:\n%s", want, page)
				}
			}
			l := s.logs.failureLine(t, id)
			if l["cause"] != string(tc.cause) || l["program"] != filepath.Join(fixtures, "cgi-bin", tc.program) || l["level"] != "ERROR" {
				t.Errorf("log line %v", l)
			}
			if d, _ := l["detail"].(string); !strings.Contains(d, tc.detail) {
				t.Errorf("log detail %q lacks %q", d, tc.detail)
			}
			if e, _ := l["stderr"].(string); !strings.Contains(e, tc.stderr) {
				t.Errorf("log stderr %q lacks %q", e, tc.stderr)
			}
		})
	}
}

func TestFailurePageHidesDetailUnlessDiagnosticsAreOn(t *testing.T) {
	s := newTestServer(t, false)
	resp := s.get(t, "/cgi-bin/exit3", "hidden")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(page), "cause: exited") || !strings.Contains(string(page), "request id: hidden") {
		t.Fatalf("status %d, page %q", resp.StatusCode, page)
	}
	for _, secret := range []string{"status 3", "database", fixtures} {
		if strings.Contains(string(page), secret) {
			t.Errorf("page shows %q without diagnostics: %s", secret, page)
		}
	}
	s.waitServed(t, "hidden")
	if l := s.logs.failureLine(t, "hidden"); !strings.Contains(l["stderr"].(string), "cannot open the database") {
		t.Errorf("the log still has the detail: %v", l)
	}
}

func TestLauncherDiagnosisBecomesStatusPageAndLog(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		cause      string
		retryAfter string
		level      string
	}{
		{"bad interpreter", &testDiag{cause: string(BadInterpreter), status: 502, err: errors.New(`line 1: "#!/usr/bin/perl\r": the interpreter path ends in a carriage return`)}, 502, string(BadInterpreter), "", "ERROR"},
		{"refused by policy", &testDiag{cause: "refused: writable by others", status: 403, err: errors.New("program is writable by others")}, 403, "refused: writable by others", "", "WARN"},
		{"cell budget full", &retryDiag{testDiag{cause: string(BudgetFull), status: 503, retry: 2500 * time.Millisecond}}, 503, string(BudgetFull), "3", "ERROR"},
		{"wrapped diagnosis", fmt.Errorf("spawner: %w", &testDiag{cause: string(OOMKilled), status: 502}), 502, string(OOMKilled), "", "ERROR"},
		{"plain error", errors.New("spawner connection lost"), 502, string(LaunchFailed), "", "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, false, func(h *Handler) { h.Launcher = failingLauncher{tc.err} })
			resp := s.get(t, "/cgi-bin/hello", "launch")
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(page), "cause: "+tc.cause) {
				t.Errorf("status %d, page %q", resp.StatusCode, page)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			rec := s.waitServed(t, "launch")
			if rec.Cause != tc.cause {
				t.Errorf("record cause %q", rec.Cause)
			}
			if l := s.logs.failureLine(t, "launch"); l["cause"] != tc.cause || l["level"] != tc.level || l["detail"] != tc.err.Error() {
				t.Errorf("log line %v", l)
			}
		})
	}
}

func TestResponseKinds(t *testing.T) {
	s := newTestServer(t, false)
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             map[string]string
		body               string
	}{
		{"document", "GET", "/cgi-bin/hello", 200, map[string]string{"X-Hello": "yes", "Content-Type": "text/plain"}, "hello\n"},
		{"HEAD sends no body", "HEAD", "/cgi-bin/hello", 200, map[string]string{"X-Hello": "yes"}, ""},
		{"Status header", "GET", "/cgi-bin/status", 418, nil, "short and stout\n"},
		{"local redirect is served inside as GET", "POST", "/cgi-bin/local", 200, nil, "REQUEST_METHOD=GET"},
		{"client redirect", "GET", "/cgi-bin/client", 302, map[string]string{"Location": "https://example.com/elsewhere"}, ""},
		{"client redirect with status and document", "GET", "/cgi-bin/moved", 301, map[string]string{"Location": "https://example.com/moved"}, "moved\n"},
		{"NPH status line and header pass through", "GET", "/cgi-bin/nph-raw", 203, map[string]string{"X-Nph": "yes"}, "raw body\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.URL+tc.path, strings.NewReader("ignored"))
			resp := s.do(t, req, "kind")
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.status {
				t.Fatalf("status %d, %v: %s", resp.StatusCode, err, body)
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(string(body), tc.body) || (tc.body == "" && len(body) != 0) {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			s.waitServed(t, "kind")
		})
	}
	t.Run("local redirect keeps the query and drops the body", func(t *testing.T) {
		req, _ := http.NewRequest("POST", s.URL+"/cgi-bin/local", strings.NewReader("payload"))
		env := readEnv(t, s.do(t, req, "local"))
		if env["PATH_INFO"] != "/redirected" || env["QUERY_STRING"] != "from=local" || env["REQUEST_URI"] != "/cgi-bin/env/redirected?from=local" {
			t.Errorf("redirected env: PATH_INFO %q QUERY_STRING %q REQUEST_URI %q", env["PATH_INFO"], env["QUERY_STRING"], env["REQUEST_URI"])
		}
		if _, ok := env["CONTENT_LENGTH"]; ok {
			t.Errorf("redirected GET has CONTENT_LENGTH %q", env["CONTENT_LENGTH"])
		}
		s.waitServed(t, "local")
	})
}

func TestRedirectLoopStopsAfterTenRedirects(t *testing.T) {
	s := newTestServer(t, false)
	resp := s.get(t, "/cgi-bin/loop", "loop")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(page), "cause: "+string(RedirectLoop)) {
		t.Fatalf("status %d: %s", resp.StatusCode, page)
	}
	s.waitServed(t, "loop")
	if l := s.logs.failureLine(t, "loop"); !strings.Contains(l["detail"].(string), "more than 10 local redirects") {
		t.Errorf("log line %v", l)
	}
}

// TestShortResponseGoesOutWholeWithItsLength: a program that writes its
// whole answer at once and exits gets no chunked encoding: the response
// ends before the first flush is due, and net/http sends it with a
// Content-Length.
func TestShortResponseGoesOutWholeWithItsLength(t *testing.T) {
	s := newTestServer(t, false)
	resp := s.get(t, "/cgi-bin/hello", "short")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Fatalf("Content-Length %d, Transfer-Encoding %v, for a body of %d bytes", resp.ContentLength, resp.TransferEncoding, len(body))
	}
}

// TestABodyEndedBeforeItsProgramGoesOutWhole: once the output is closed,
// the body is complete but for the exit status, and nothing is flushed
// while the gateway waits for it: the response still goes out in one
// piece with its Content-Length, however long the program takes to exit.
func TestABodyEndedBeforeItsProgramGoesOutWhole(t *testing.T) {
	s := newTestServer(t, false)
	resp := s.get(t, "/cgi-bin/linger", "linger")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != "all of it\n" {
		t.Fatalf("status %d, body %q, %v", resp.StatusCode, body, err)
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Fatalf("Content-Length %d, Transfer-Encoding %v: the body was flushed before the program exited", resp.ContentLength, resp.TransferEncoding)
	}
}

func TestStreamedOutputArrivesBeforeTheProgramEnds(t *testing.T) {
	s := newTestServer(t, false)
	fifo := mkfifo(t)
	resp := s.get(t, "/cgi-bin/stream?"+fifo, "stream")
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	// The program is blocked reading the fifo: this line can only have
	// come while it runs.
	first, err := br.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first line %q, %v", first, err)
	}
	if err := os.WriteFile(fifo, []byte("go\n"), 0); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second go\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestTimeoutsAndDisconnectsKillTheWholeTree(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pathInfo   string
		opt        serverOption
		disconnect bool // the client goes away after the pids are known
		status     int  // 0: the client sees no status (disconnect) or a broken body
		cause      Cause
	}{
		{"header timeout", "", func(h *Handler) { h.HeaderTimeout = 300 * time.Millisecond }, false, 504, HeaderTimeout},
		{"idle timeout", "/headers", func(h *Handler) { h.IdleTimeout = 300 * time.Millisecond }, false, 200, IdleTimeout},
		{"disconnect while waiting for the header", "", nil, true, 0, ClientGone},
		{"disconnect while streaming the body", "/headers", nil, true, 200, ClientGone},
		{"background child of a program that exited", "/exit", nil, false, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []serverOption
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			s := newTestServer(t, false, opts...)
			fifo := mkfifo(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/cgi-bin/tree"+tc.pathInfo+"?"+fifo, nil)
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				req.Header.Set("X-Request-Id", "tree")
				resp, err := s.Client().Do(req)
				done <- result{resp, err}
			}()
			pids, fds := treePids(t, fifo, tc.pathInfo == "/exit")
			if tc.disconnect && tc.status == 0 {
				cancel()
			}
			res := <-done
			if res.err == nil {
				body := bufio.NewReader(res.resp.Body)
				if res.resp.StatusCode != tc.status {
					t.Errorf("status %d, want %d", res.resp.StatusCode, tc.status)
				}
				if tc.status == 200 {
					if line, err := body.ReadString('\n'); err != nil || (line != "first\n" && line != "done\n") {
						t.Errorf("first line %q, %v", line, err)
					}
					if tc.disconnect {
						cancel()
					}
				}
				rest, err := io.ReadAll(body)
				switch {
				case tc.cause == IdleTimeout && err == nil:
					t.Errorf("the client read a clean end of body (%q) after an idle timeout", rest)
				case tc.cause == "" && err != nil:
					t.Errorf("reading the body: %v", err)
				}
				res.resp.Body.Close()
			} else if !tc.disconnect {
				t.Fatalf("request: %v", res.err)
			}
			rec := s.waitServed(t, "tree")
			requireGone(t, pids, fds)
			if tc.cause == "" {
				if ls := s.logs.lines(t, "tree", "cgi failure"); len(ls) != 0 {
					t.Errorf("failure logged for a clean run: %v", ls)
				}
				return
			}
			if rec.Cause != string(tc.cause) {
				t.Errorf("record cause %q, want %q", rec.Cause, tc.cause)
			}
			if l := s.logs.failureLine(t, "tree"); l["cause"] != string(tc.cause) {
				t.Errorf("log line %v", l)
			}
		})
	}
}

func TestTruncatedBodyIsVisibleToTheClient(t *testing.T) {
	s := newTestServer(t, false)
	for _, tc := range []struct {
		name, path string
		cause      Cause
	}{
		{"chunked response of a killed program", "/cgi-bin/cutshort", Signaled},
		{"Content-Length response of a killed program", "/cgi-bin/cutshort/length", Signaled},
		{"Content-Length longer than the body", "/cgi-bin/shortlen", ContentLengthMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.get(t, tc.path, "cut")
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if err == nil {
				t.Fatalf("the client read %d bytes and a clean end; want an error", len(body))
			}
			s.waitServed(t, "cut")
			if l := s.logs.failureLine(t, "cut"); l["cause"] != string(tc.cause) {
				t.Errorf("log line %v", l)
			}
			s.logs.buf.Reset()
		})
	}
}

func TestNonZeroExitAfterACompleteResponseIsLoggedNotTruncated(t *testing.T) {
	s := newTestServer(t, false)
	resp := s.get(t, "/cgi-bin/exitlate", "late")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != "done\n" {
		t.Fatalf("status %d, %v, %q", resp.StatusCode, err, body)
	}
	s.waitServed(t, "late")
	if l := s.logs.failureLine(t, "late"); l["cause"] != string(Exited) || l["level"] != "WARN" || l["exit"] != 1.0 {
		t.Errorf("log line %v", l)
	}
}

func TestStderrIsLoggedLineByLineAndRateLimited(t *testing.T) {
	s := newTestServer(t, false)
	resp := s.get(t, "/cgi-bin/chatter", "chatter")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Fatalf("body %q", body)
	}
	s.waitServed(t, "chatter")
	lines := s.logs.lines(t, "chatter", "cgi stderr")
	if len(lines) < stderrBurst || len(lines) >= 400 {
		t.Errorf("%d stderr lines logged of 400, want the burst of %d and then a rate limit", len(lines), stderrBurst)
	}
	if lines[0]["line"] != "chatter 0" || lines[0]["program"] != filepath.Join(fixtures, "cgi-bin", "chatter") {
		t.Errorf("first stderr line %v", lines[0])
	}
	sup := s.logs.lines(t, "chatter", "cgi stderr rate-limited")
	if len(sup) != 1 || sup[0]["suppressed"].(float64)+float64(len(lines)) != 400 {
		t.Errorf("suppression summary %v with %d lines logged", sup, len(lines))
	}
}

func TestHandlerCopiesServeIndependently(t *testing.T) {
	// The server copies a Handler per request; copies must not share state.
	s := newTestServer(t, false)
	h2 := *s.h
	h2.Root = filepath.Join(fixtures, "cgi-bin", "sub")
	rec := &Record{ID: "copy"}
	rw := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/cgi-bin/prog", nil)
	h2.ServeHTTP(rw, req.WithContext(NewContext(req.Context(), rec)))
	if rw.Code != 200 || !bytes.Contains(rw.Body.Bytes(), []byte("/cgi-bin/prog|")) {
		t.Fatalf("copy with another root: %d %q", rw.Code, rw.Body.String())
	}
	resp := s.get(t, "/cgi-bin/hello", "orig")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello\n" {
		t.Fatalf("original: %q", b)
	}
}

func TestClientThatSendsHalfItsBodyKillsTheProgram(t *testing.T) {
	s := newTestServer(t, false)
	for _, tc := range []struct {
		name, head, body string
	}{
		{"small Content-Length body", "Content-Length: 1000\r\n", strings.Repeat("x", 10)},
		{"streamed Content-Length body", "Content-Length: 1000000\r\n", strings.Repeat("x", 100000)},
		{"chunked body", "Transfer-Encoding: chunked\r\n", "1000\r\n" + strings.Repeat("x", 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST /cgi-bin/sha HTTP/1.1\r\nHost: test\r\nX-Request-Id: half\r\n%s\r\n%s", tc.head, tc.body)
			conn.(*net.TCPConn).CloseWrite()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				// The program may have sent its header before the body
				// broke; then its response must break too.
				b, err := io.ReadAll(resp.Body)
				if resp.StatusCode == 200 && err == nil {
					t.Errorf("a clean 200 for half a body: %q", b)
				}
				resp.Body.Close()
			}
			conn.Close()
			rec := s.waitServed(t, "half")
			if rec.Cause != string(BodyUnread) && rec.Cause != string(ClientGone) {
				t.Errorf("cause %q, want %q or %q", rec.Cause, BodyUnread, ClientGone)
			}
			s.logs.failureLine(t, "half")
			s.logs.buf.Reset()
		})
	}
}

// recordingLauncher remembers the last Command it started.
type recordingLauncher struct {
	execLauncher
	last chan Command
}

func (l recordingLauncher) Start(ctx context.Context, cmd *Command) (Process, error) {
	l.last <- *cmd
	return l.execLauncher.Start(ctx, cmd)
}

func TestCommandDescribesTheProgramToTheLauncher(t *testing.T) {
	l := recordingLauncher{last: make(chan Command, 1)}
	s := newTestServer(t, false, func(h *Handler) { h.Launcher = l; h.Identity = "alice" })
	resp := s.get(t, "/cgi-bin/sub/prog/info", "cmd")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	cmd := <-l.last
	root := filepath.Join(fixtures, "cgi-bin")
	prog := filepath.Join(root, "sub", "prog")
	if cmd.Path != prog || len(cmd.Args) != 1 || cmd.Args[0] != prog || cmd.Dir != filepath.Dir(prog) ||
		cmd.Identity != "alice" || cmd.Route != "/cgi-bin/" || cmd.RouteDir != root {
		t.Errorf("command %+v", cmd)
	}
	if cmd.Stdout == nil || cmd.Stderr == nil {
		t.Errorf("standard streams missing: %+v", cmd)
	}
	if cmd.Stdin != nil {
		t.Errorf("a GET's stdin is %v, want nil (the launcher's /dev/null)", cmd.Stdin.Name())
	}
	if rec := s.waitServed(t, "cmd"); rec.Identity != "alice" || rec.Program != prog {
		t.Errorf("record %+v", rec)
	}
}

func TestHeaderTimeoutDoesNotLimitTheBody(t *testing.T) {
	// The program pauses longer than the header time-out, after its header.
	s := newTestServer(t, false, func(h *Handler) { h.HeaderTimeout = 100 * time.Millisecond; h.IdleTimeout = 0 })
	resp := s.get(t, "/cgi-bin/pause", "pause")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "before\nafter\n" {
		t.Fatalf("body %q, %v", body, err)
	}
}

// plainWriter hides the server's ResponseWriter behind one that cannot
// flush, as a middleware without Unwrap does.
type plainWriter struct{ w http.ResponseWriter }

func (p plainWriter) Header() http.Header         { return p.w.Header() }
func (p plainWriter) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p plainWriter) WriteHeader(code int)        { p.w.WriteHeader(code) }

func TestResponseWriterThatCannotFlushStillGetsTheBody(t *testing.T) {
	s := newTestServer(t, false)
	inner := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner.ServeHTTP(plainWriter{w}, r) })
	resp := s.get(t, "/cgi-bin/hello", "plain")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != "hello\n" {
		t.Fatalf("status %d, %v, %q", resp.StatusCode, err, body)
	}
}

func TestLocalRedirectGoesThroughDispatch(t *testing.T) {
	var got *http.Request
	dispatch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "dispatched\n")
	})
	s := newTestServer(t, false, func(h *Handler) { h.Dispatch = dispatch })
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/local", strings.NewReader("payload"))
	req.Header.Set("X-Test-User", "alice")
	resp := s.do(t, req, "dispatch")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "dispatched\n" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	s.waitServed(t, "dispatch")
	if got.Method != http.MethodGet || got.URL.Path != "/cgi-bin/env/redirected" || got.URL.RawQuery != "from=local" ||
		got.ContentLength != 0 || got.Header.Get("Content-Type") != "" || RecordFrom(got.Context()).User != "alice" {
		t.Errorf("dispatched request %s %s, length %d, record %+v", got.Method, got.URL, got.ContentLength, RecordFrom(got.Context()))
	}
}

func TestHTTP2StreamsBothWays(t *testing.T) {
	s := newTestServer(t, false)
	s.Close()
	h2 := httptest.NewUnstartedServer(s.Config.Handler)
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	s.Server = h2
	const size = 1 << 20
	req, _ := http.NewRequest(http.MethodPost, h2.URL+"/cgi-bin/writefirst", hiddenLength{&patternReader{n: size}})
	resp := s.do(t, req, "h2")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, %v", resp.Proto, err)
	}
	if want := string(make([]byte, 1<<20)) + patternSum(size) + "  -\n"; string(body) != want {
		t.Fatalf("got %d bytes, want 1 MiB of zeros and the input's hash", len(body))
	}
	env := readEnv(t, s.get(t, "/cgi-bin/env", "h2env"))
	if env["SERVER_PROTOCOL"] != "HTTP/2.0" || env["HTTPS"] != "on" {
		t.Errorf("SERVER_PROTOCOL %q HTTPS %q", env["SERVER_PROTOCOL"], env["HTTPS"])
	}
}

func TestProgramsGetBlockingStandardStreams(t *testing.T) {
	s := newTestServer(t, false, func(*Handler) {})
	for _, tt := range []struct {
		name, stdin string
		body        []byte
	}{
		{"no body", "/dev/null", nil},
		{"small body", "pipe:", []byte("small")},
		{"streamed body", "pipe:", bytes.Repeat([]byte("x"), 64<<10)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method, body := http.MethodGet, io.Reader(nil)
			if tt.body != nil {
				method, body = http.MethodPost, bytes.NewReader(tt.body)
			}
			req, err := http.NewRequest(method, s.URL+"/cgi-bin/stdio", body)
			if err != nil {
				t.Fatal(err)
			}
			resp := s.do(t, req, "stdio")
			out, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 3 {
				t.Fatalf("output %q", out)
			}
			for fd, line := range lines {
				name, flags, ok := strings.Cut(line, " ")
				want := "pipe:"
				if fd == 0 {
					want = tt.stdin
				}
				if !ok || !strings.HasPrefix(name, want) {
					t.Errorf("fd %d is %q, want %s", fd, line, want)
				}
				f, err := strconv.ParseUint(flags, 8, 32)
				if err != nil {
					t.Fatalf("fd %d flags %q: %v", fd, flags, err)
				}
				if f&syscall.O_NONBLOCK != 0 {
					t.Errorf("fd %d (%s) is non-blocking (flags %s): programs expect blocking stdio", fd, name, flags)
				}
			}
		})
	}
}

func TestAFailedLaunchAnswersALargePostWithItsPage(t *testing.T) {
	// A body over pipeWriteSafe switches the connection to full duplex
	// before the launch fails and the body is left unread.
	s := newTestServer(t, false, func(*Handler) {})
	for i := range 10 {
		req, err := http.NewRequest(http.MethodPost, s.URL+"/cgi-bin/noexec", bytes.NewReader(bytes.Repeat([]byte("x"), 100000)))
		if err != nil {
			t.Fatal(err)
		}
		resp := s.do(t, req, fmt.Sprintf("post-%d", i))
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), fmt.Sprintf("post-%d", i)) {
			t.Fatalf("try %d: %d %q %v", i, resp.StatusCode, body, err)
		}
	}
}
