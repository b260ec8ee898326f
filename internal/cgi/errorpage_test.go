package cgi

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestErrorPage(t *testing.T) {
	base := ErrorPage{
		Status: http.StatusServiceUnavailable, Cause: "cell budget full", RequestID: "r-1",
		Detail: "/home/a/x.cgi: no cell", Stderr: []string{"boom"},
	}
	for _, tc := range []struct {
		name       string
		edit       func(*ErrorPage)
		want       []string
		wantNot    []string
		retryAfter string
	}{
		{name: "detail hidden without diagnostics", edit: func(*ErrorPage) {},
			want: []string{"503 Service Unavailable\n", "cause: cell budget full\n", "request id: r-1\n"}, wantNot: []string{"detail", "boom", "/home"}},
		{name: "detail and stderr shown with diagnostics", edit: func(p *ErrorPage) { p.ShowDetail = true },
			want: []string{"detail: /home/a/x.cgi: no cell\n", "stderr:\n  boom\n"}},
		{name: "retry-after rounded up to whole seconds", edit: func(p *ErrorPage) { p.RetryAfter = 1500 * time.Millisecond }, retryAfter: "2"},
		{name: "retry-after of exactly one second", edit: func(p *ErrorPage) { p.RetryAfter = time.Second }, retryAfter: "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.edit(&p)
			rr := httptest.NewRecorder()
			rr.Header().Set("X-Program", "set before the failure")
			WriteErrorPage(rr, p)
			body := rr.Body.String()
			if rr.Code != p.Status {
				t.Errorf("status %d, want %d", rr.Code, p.Status)
			}
			for _, s := range tc.want {
				if !strings.Contains(body, s) {
					t.Errorf("body %q lacks %q", body, s)
				}
			}
			for _, s := range tc.wantNot {
				if strings.Contains(body, s) {
					t.Errorf("body %q has %q", body, s)
				}
			}
			h := rr.Header()
			if h.Get("X-Program") != "" || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("header %v", h)
			}
			if h.Get("Retry-After") != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", h.Get("Retry-After"), tc.retryAfter)
			}
			if h.Get("Content-Length") != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %s for %d bytes", h.Get("Content-Length"), len(body))
			}
		})
	}
}
