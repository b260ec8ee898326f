package app

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/suserve/suserve/internal/testutil"
)

const hundredMiB = 100 << 20

// patternReader yields n bytes of the sequence 0, 1, ..., 250, repeated,
// and samples the heap as it goes.
type patternReader struct {
	n, off int64
	mem    *heapProbe
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n-r.off {
		p = p[:r.n-r.off]
	}
	for i := range p {
		p[i] = byte((r.off + int64(i)) % 251)
	}
	r.off += int64(len(p))
	r.mem.sample(r.off)
	return len(p), nil
}

// patternChecker checks that what it is given is the pattern, from offset 0.
type patternChecker struct {
	off int64
	mem *heapProbe
}

var errPattern = errors.New("byte differs from the pattern")

func (w *patternChecker) Write(p []byte) (int, error) {
	for i, b := range p {
		if b != byte((w.off+int64(i))%251) {
			return i, fmt.Errorf("%w at offset %d", errPattern, w.off+int64(i))
		}
	}
	w.off += int64(len(p))
	w.mem.sample(w.off)
	return len(p), nil
}

// heapProbe records the largest heap seen, sampling every 4 MiB moved.
type heapProbe struct {
	mu   sync.Mutex
	last int64
	max  uint64
}

func (h *heapProbe) sample(off int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off-h.last < 4<<20 && h.last != 0 {
		return
	}
	h.last = off
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.max = max(h.max, ms.HeapInuse)
}

func TestHundredMiBBothWaysWithFlatMemory(t *testing.T) {
	both(t, func(t *testing.T, protocol, bin string) {
		p, _ := newPool(t, protocol, bin)
		srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
		if code, _, _ := get(t, srv.URL+"/app/hello"); code != 200 {
			t.Fatal(code)
		}
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		for _, tc := range []struct {
			name string
			req  func(mem *heapProbe) (*http.Request, error)
		}{
			{"echo", func(mem *heapProbe) (*http.Request, error) {
				req, err := http.NewRequest("POST", srv.URL+"/app/echo", &patternReader{n: hundredMiB, mem: mem})
				if req != nil {
					req.ContentLength = hundredMiB
				}
				return req, err
			}},
			{"chunked echo", func(mem *heapProbe) (*http.Request, error) {
				return http.NewRequest("POST", srv.URL+"/app/echo", &patternReader{n: hundredMiB, mem: mem})
			}},
			{"download", func(*heapProbe) (*http.Request, error) {
				return http.NewRequest("GET", srv.URL+"/app/big?n="+strconv.Itoa(hundredMiB), nil)
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				mem := &heapProbe{}
				req, err := tc.req(mem)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("%d %s", resp.StatusCode, b)
				}
				pc := &patternChecker{mem: mem}
				if _, err := io.Copy(pc, resp.Body); err != nil {
					t.Fatal(err)
				}
				if pc.off != hundredMiB {
					t.Fatalf("got %d bytes, want %d", pc.off, hundredMiB)
				}
				// Client, server and proxy share this heap: all three
				// together must stay far below the 100 MiB moved.
				growth := int64(mem.max) - int64(base.HeapInuse)
				t.Logf("heap in use: %d MiB at start, %d MiB at most (growth %d MiB)", base.HeapInuse>>20, mem.max>>20, growth>>20)
				if growth > 16<<20 {
					t.Fatalf("heap grew by %d MiB while moving 100 MiB", growth>>20)
				}
			})
		}
	})
}

func TestWebSocketEchoThroughHTTPWorker(t *testing.T) {
	p, _ := newPool(t, ProtocolHTTP, httpWorker)
	srv := serve(t, &Handler{Pools: p, Prefix: "/app/"}, "")
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	fmt.Fprintf(c, "GET /app/ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("handshake: %s %v", resp.Status, resp.Header)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 300), strings.Repeat("y", 70000)} {
		writeMaskedFrame(t, c, 1, []byte(msg))
		op, got := readServerFrame(t, br)
		if op != 1 || string(got) != msg {
			t.Fatalf("echo of %d bytes: op %d, %d bytes", len(msg), op, len(got))
		}
	}
	writeMaskedFrame(t, c, 8, nil)
}

// writeMaskedFrame writes one final client frame (RFC 6455 §5.2; clients
// must mask, §5.3).
func writeMaskedFrame(t *testing.T, w io.Writer, op byte, payload []byte) {
	t.Helper()
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
}

func readServerFrame(t *testing.T, br *bufio.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatal(err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return h[0] & 0x0f, p
}

const phpPage = `<?php
header("X-Php: yes");
printf("uid=%d script=%s name=%s info=%s docroot=%s body=%d",
	posix_geteuid(), $_SERVER["SCRIPT_FILENAME"], $_SERVER["SCRIPT_NAME"],
	$_SERVER["PATH_INFO"] ?? "", $_SERVER["DOCUMENT_ROOT"], strlen(file_get_contents("php://input")));
`

func TestPHPPageRunsUnderPHPCGI(t *testing.T) {
	const phpCGI = "/usr/bin/php-cgi"
	if _, err := exec.LookPath(phpCGI); err != nil {
		t.Skip("php-cgi is not installed at /usr/bin/php-cgi (Debian: apt-get install php-cgi)")
	}
	// The document root must be readable by the account php-cgi runs as.
	dir, err := os.MkdirTemp("", "app-php-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.php"), []byte(phpPage), 0o644); err != nil {
		t.Fatal(err)
	}
	// As root, the pool runs as a test account (run_as = "account"), and
	// the page must report that account's uid.
	uid := os.Geteuid()
	p, l := newPool(t, ProtocolFastCGI, phpCGI, func(p *Pool) {
		p.Name = "/wiki/"
		p.Dir = dir
		p.Workers = 2
	})
	if uid == 0 {
		uid = testutil.AliceUID
		p.Identity = "alice"
		l.uids = map[string]uint32{"alice": testutil.AliceUID}
	}
	srv := serve(t, &Handler{Pools: p, Prefix: "/wiki/", Dir: dir, Index: "index.php", SplitPath: ".php"}, "")
	for _, tc := range []struct {
		path, body, want string
	}{
		{"/wiki/", "", fmt.Sprintf("uid=%d script=%s/index.php name=/wiki/index.php info= docroot=%s body=0", uid, dir, dir)},
		{"/wiki/index.php/page/One", "abc", fmt.Sprintf("uid=%d script=%s/index.php name=/wiki/index.php info=/page/One docroot=%s body=3", uid, dir, dir)},
	} {
		resp, err := http.Post(srv.URL+tc.path, "text/plain", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != tc.want || resp.Header.Get("X-Php") != "yes" {
			t.Errorf("%s: %d %q %v, want %q", tc.path, resp.StatusCode, b, resp.Header, tc.want)
		}
	}
	code, body, _ := get(t, srv.URL+"/wiki/missing.php")
	if code != http.StatusNotFound {
		t.Errorf("missing script: %d %q", code, body)
	}
}
