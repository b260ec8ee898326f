package fcgi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/suserve/suserve/internal/fcgi"
)

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "hello\n")
})

// BenchmarkRoundTrip measures a hello request over a kept FastCGI
// connection to Go's net/http/fcgi, and over a new connection each time,
// against plain HTTP/1.1 over a kept unix-socket connection to net/http
// measured first in the same run: the "x-http" metric is a FastCGI round
// trip's time as a multiple of the HTTP one.
func BenchmarkRoundTrip(b *testing.B) {
	var baseline float64 // ns per HTTP round trip, from the last run of http-unix
	b.Run("http-unix", func(b *testing.B) {
		httpUnixRoundTrips(b)
		baseline = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("fastcgi-kept", func(b *testing.B) {
		path, _ := startGoWorker(b, hello)
		p := fcgi.NewPool("unix", path, 1)
		defer p.Close()
		req := &fcgi.Request{Params: cgiParams("GET", "/hello", -1)}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := p.Do(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp); err != nil {
				b.Fatal(err)
			}
			resp.Close()
		}
		b.StopTimer()
		if s := p.Stats(); s.Dialed != 1 {
			b.Fatalf("dialed %d connections, want 1 kept", s.Dialed)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseline, "x-http")
	})
	b.Run("fastcgi-conn-per-request", func(b *testing.B) {
		path, _ := startGoWorker(b, hello)
		req := &fcgi.Request{Params: cgiParams("GET", "/hello", -1)}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			c, err := fcgi.Dial(ctx, "unix", path)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := c.Do(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp); err != nil {
				b.Fatal(err)
			}
			resp.Close()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseline, "x-http")
	})
}

func httpUnixRoundTrips(b *testing.B) {
	path := filepath.Join(b.TempDir(), "http.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: hello}
	go srv.Serve(l)
	defer srv.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 1,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get("http://worker/hello")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
