// Command fcgiworker is a FastCGI worker for the app package's tests: Go's
// net/http/fcgi serving on descriptor 0, as suserve hands it over. Its
// behaviour on start comes from WORKER_MODE.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
)

func main() {
	switch os.Getenv("WORKER_MODE") {
	case "exit":
		fmt.Fprintln(os.Stderr, "cannot open the database: /srv/app/db: permission denied")
		os.Exit(3)
	case "noaccept":
		fmt.Fprintln(os.Stderr, "warming up forever")
		select {}
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
	case "malformed":
		serveMalformed()
		return
	}
	fmt.Fprintln(os.Stderr, "fcgiworker ready")
	err := fcgi.Serve(nil, http.HandlerFunc(handle))
	fmt.Fprintln(os.Stderr, "fcgiworker:", err)
	os.Exit(1)
}

func handle(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/app/pid":
		fmt.Fprintf(w, "%d", os.Getpid())
	case "/app/env":
		env := fcgi.ProcessEnv(r)
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s=%s\n", k, env[k])
		}
		fmt.Fprintf(w, "METHOD=%s\nPATH=%s\nQUERY=%s\nX_CUSTOM=%s\nAUTHORIZATION=%s\nFORGED=%s\n", r.Method, r.URL.Path,
			r.URL.RawQuery, r.Header.Get("X-Custom"), r.Header.Get("Authorization"), r.Header.Get("X_Forged"))
	case "/app/echo":
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	case "/app/big":
		n, _ := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, io.LimitReader(&pattern{}, n))
	case "/app/block":
		// Holds its worker until the client ends the body.
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "unblocked")
	case "/app/die":
		fmt.Fprintln(os.Stderr, "dying on request")
		os.Exit(7)
	default:
		w.Header().Set("X-Worker", "go-fcgi")
		fmt.Fprintf(w, "hello from %d", os.Getpid())
	}
}

// pattern is an endless stream of the byte sequence 0, 1, ..., 250.
type pattern struct{ off int64 }

func (r *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte((r.off + int64(i)) % 251)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// serveMalformed answers every request with a header block that has no
// colon, speaking just enough FastCGI 1.0 to do so.
func serveMalformed() {
	l, err := net.FileListener(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(2)
		}
		go func(c net.Conn) {
			defer c.Close()
			var h [8]byte
			for {
				if _, err := io.ReadFull(c, h[:]); err != nil {
					return
				}
				n := int(h[4])<<8 | int(h[5])
				body := make([]byte, n+int(h[6]))
				if _, err := io.ReadFull(c, body); err != nil {
					return
				}
				switch {
				case h[1] == 9: // GET_VALUES
					c.Write(record(10, 0, nil))
				case h[1] == 5 && n == 0: // the end of STDIN
					out := []byte("Content-Type text/plain\r\n\r\nbody\n")
					c.Write(record(6, 1, out))
					c.Write(record(6, 1, nil))
					c.Write(record(3, 1, []byte{0, 0, 0, 0, 0, 0, 0, 0}))
					return
				}
			}
		}(c)
	}
}

func record(t byte, id uint16, content []byte) []byte {
	n := len(content)
	b := []byte{1, t, byte(id >> 8), byte(id), byte(n >> 8), byte(n), 0, 0}
	return append(b, content...)
}
