package app

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkHelloVersusDirect measures a hello request through suserve to a
// FastCGI and to an HTTP worker against a plain net/http hello server (no
// proxy) in the same run, at 4 and 32 client connections, and reports each
// as a fraction of the direct server's requests per second. Run with
// -benchtime=1x; the target is at least 0.6.
func BenchmarkHelloVersusDirect(b *testing.B) {
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	defer direct.Close()
	targets := []struct{ name, url string }{{"direct", direct.URL + "/app/hello"}}
	for _, tc := range []struct{ protocol, bin string }{{ProtocolFastCGI, fcgiWorker}, {ProtocolHTTP, httpWorker}} {
		p := &Pool{Name: "/app/", Protocol: tc.protocol, Command: []string{tc.bin}, Launcher: &execLauncher{},
			SocketDir: b.TempDir(), Workers: 2, Concurrency: 32}
		defer p.Close(b.Context())
		srv := httptest.NewServer(&Handler{Pools: p, Prefix: "/app/"})
		defer srv.Close()
		targets = append(targets, struct{ name, url string }{tc.protocol, srv.URL + "/app/hello"})
	}
	// Rounds interleave the targets, and each keeps its best round, so that
	// other load on the machine does not favour whichever ran first.
	const requests, rounds = 2000, 3
	for b.Loop() {
		for _, conns := range []int{4, 32} {
			best := make([]float64, len(targets))
			for range rounds {
				for i, tg := range targets {
					best[i] = max(best[i], measure(b, tg.url, conns, requests))
				}
			}
			base := best[0]
			for i, tg := range targets {
				rps := best[i]
				b.ReportMetric(rps, fmt.Sprintf("req/s-%s-%dconn", tg.name, conns))
				b.Logf("%-8s %2d connections: %8.0f req/s  %.2f of direct", tg.name, conns, rps, rps/base)
			}
		}
	}
}

// measure sends n GET requests over conns connections and returns the
// requests per second.
func measure(b *testing.B, url string, conns, n int) float64 {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
