package cgi

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkGatewayAgainstForkExec serves the hello program through the
// gateway over keep-alive HTTP and reports, beside ns/op, the ratio to the
// raw limit measured in the same run: fork/exec and wait of the same program
// with no HTTP and no pipes.
func BenchmarkGatewayAgainstForkExec(b *testing.B) {
	prog := filepath.Join(fixtures, "cgi-bin", "hello")
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	attr := &syscall.ProcAttr{Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd()}, Sys: &syscall.SysProcAttr{Setsid: true}}
	const rawRuns = 200
	start := time.Now()
	for range rawRuns {
		pid, err := syscall.ForkExec(prog, []string{prog}, attr)
		if err != nil {
			b.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	raw := time.Since(start) / rawRuns

	s := newTestServer(b, false)
	c := s.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Get(s.URL + "/cgi-bin/hello")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(raw)/float64(per), "of-raw-fork-exec")
}
