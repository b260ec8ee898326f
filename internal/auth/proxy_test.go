package auth

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestProxyHeader(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name      string
		trusted   []netip.Prefix
		anonymous bool
		header    map[string][]string
		status    int
		body      string // prefix of the echo
	}{
		{"trusted proxy names the user", loopback, false,
			map[string][]string{"X-Remote-User": {"alice"}}, 200, `user="alice" ok=true type="Proxy"`},
		{"untrusted address is ignored", elsewhere, false,
			map[string][]string{"X-Remote-User": {"alice"}}, 403, "403 Forbidden\n"},
		{"untrusted address is ignored, anonymous allowed", elsewhere, true,
			map[string][]string{"X-Remote-User": {"alice"}}, 200, `user="" ok=false`},
		{"underscore spelling is never honoured", loopback, true,
			map[string][]string{"X_Remote_User": {"alice"}}, 200, `user="" ok=false`},
		{"trusted proxy without a user", loopback, false, nil, 403, "403 Forbidden\n"},
		{"trusted proxy without a user, anonymous allowed", loopback, true, nil, 200, `user="" ok=false`},
		{"user twice", loopback, false,
			map[string][]string{"X-Remote-User": {"alice", "bob"}}, 400, "400 Bad Request\n"},
		{"user with a colon", loopback, false,
			map[string][]string{"X-Remote-User": {"alice:x"}}, 400, "400 Bad Request\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var leaked []string
			p := &Proxy{Header: "X-Remote-User", Trusted: tc.trusted, AuthType: "Proxy", Anonymous: tc.anonymous, Logger: (&logBuffer{}).Logger()}
			srv := serve(t, p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k := range r.Header {
					if fold(k) == "x-remote-user" || k == "Authorization" {
						leaked = append(leaked, k)
					}
				}
				echoUser(w, r)
			})))
			hdr := map[string][]string{"Authorization": {"Basic YTpi"}}
			for k, v := range tc.header {
				hdr[k] = v
			}
			got := do(t, srv.Client(), srv.URL, hdr)
			if got.status != tc.status || !strings.HasPrefix(got.body, tc.body) {
				t.Errorf("got %d %q, want %d %q", got.status, got.body, tc.status, tc.body)
			}
			if len(leaked) > 0 {
				t.Errorf("headers reached the program: %v", leaked)
			}
		})
	}
}
