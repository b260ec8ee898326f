package auth

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// echoUser answers with what reached it: the user, the auth type and any
// credential header left on the request.
var echoUser = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	u, ok := UserFrom(r.Context())
	fmt.Fprintf(w, "user=%q ok=%v type=%q authorization=%q proxy-authorization=%q",
		u.Name, ok, u.AuthType, r.Header.Get("Authorization"), r.Header.Get("Proxy-Authorization"))
})

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a GET with the given headers through client and reads the whole
// response.
func do(t *testing.T, client *http.Client, url string, header map[string][]string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func basicHeader(user, password string) map[string][]string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, password)
	return map[string][]string{"Authorization": {r.Header.Get("Authorization")}}
}

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// clientFrom returns a client whose connections come from the loopback
// address src (any of 127.0.0.0/8 works on Linux), to act as another client
// address.
func clientFrom(t *testing.T, src string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestBasicAdmitsValidCredentialsAndHidesThem(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"), "bob:"+apacheAPR1)
	var outerSaw string
	b := &Basic{Realm: "test", Verifier: fx.h}
	// An outer handler, as an access log would be, looks after next ran.
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.Wrap(echoUser).ServeHTTP(w, r)
		outerSaw = r.Header.Get("Authorization")
	}))
	for _, tc := range []struct{ user, password string }{{"alice", "pw"}, {"bob", "myPassword"}} {
		hdr := basicHeader(tc.user, tc.password)
		hdr["Proxy-Authorization"] = []string{"Basic Zm9vOmJhcg=="}
		got := do(t, srv.Client(), srv.URL, hdr)
		want := fmt.Sprintf(`user=%q ok=true type="Basic" authorization="" proxy-authorization=""`, tc.user)
		if got.status != 200 || got.body != want {
			t.Errorf("%s: %d %s, want 200 %s", tc.user, got.status, got.body, want)
		}
		if outerSaw != "" {
			t.Errorf("the Authorization header is still on the request after next: %q", outerSaw)
		}
	}
}

func TestBasicRefusesWith401AndAChallenge(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	srv := serve(t, (&Basic{Realm: `suserve "test"`, Verifier: fx.h}).Wrap(echoUser))
	for _, tc := range []struct {
		name   string
		header map[string][]string
	}{
		{"no credentials", nil},
		{"wrong password", basicHeader("alice", "nope")},
		{"unknown user", basicHeader("mallory", "pw")},
		{"empty user", basicHeader("", "pw")},
		{"control character in password", basicHeader("alice", "p\x01w")},
		{"password too long", basicHeader("alice", strings.Repeat("x", maxPasswordLen+1))},
		{"not base64", map[string][]string{"Authorization": {"Basic !!!"}}},
		{"no colon", map[string][]string{"Authorization": {"Basic YWxpY2U="}}},
		{"empty token", map[string][]string{"Authorization": {"Basic"}}},
		{"two credentials", map[string][]string{"Authorization": {basicHeader("alice", "pw")["Authorization"][0], basicHeader("alice", "pw")["Authorization"][0]}}},
		{"another scheme", map[string][]string{"Authorization": {"Bearer abc"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, srv.Client(), srv.URL, tc.header)
			if got.status != http.StatusUnauthorized {
				t.Fatalf("status %d, body %q", got.status, got.body)
			}
			if c := got.header.Get("WWW-Authenticate"); c != `Basic realm="suserve \"test\"", charset="UTF-8"` {
				t.Errorf("WWW-Authenticate %q", c)
			}
			if got.body != "401 Unauthorized\n" || got.header.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("page %q (%s)", got.body, got.header.Get("Content-Type"))
			}
		})
	}
}

func TestBasicAdmitsAnonymousOnlyWithoutCredentials(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	srv := serve(t, (&Basic{Realm: "r", Verifier: fx.h, Anonymous: true}).Wrap(echoUser))
	if got := do(t, srv.Client(), srv.URL, nil); got.status != 200 || !strings.HasPrefix(got.body, `user="" ok=false`) {
		t.Errorf("no credentials: %d %q, want anonymous", got.status, got.body)
	}
	if got := do(t, srv.Client(), srv.URL, map[string][]string{"Authorization": {"Bearer x"}}); got.status != 200 || got.header.Get("WWW-Authenticate") != "" {
		t.Errorf("another scheme: %d, want anonymous", got.status)
	}
	// Credentials that are wrong are not quietly downgraded to anonymous.
	if got := do(t, srv.Client(), srv.URL, basicHeader("alice", "nope")); got.status != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", got.status)
	}
	if got := do(t, srv.Client(), srv.URL, basicHeader("alice", "pw")); got.status != 200 || !strings.HasPrefix(got.body, `user="alice" ok=true`) {
		t.Errorf("right password: %d %q", got.status, got.body)
	}
}

func TestRateLimitAnswers429AfterTheBurst(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"), bcryptLine(t, "bob", "pw"))
	log := &logBuffer{}
	lim := &FailureLimiter{Rate: rate.Every(time.Hour), Burst: 3, Logger: log.Logger()}
	srv := serve(t, (&Basic{Realm: "r", Verifier: fx.h, Limiter: lim}).Wrap(echoUser))
	client := srv.Client()

	if got := do(t, client, srv.URL, basicHeader("alice", "pw")); got.status != 200 {
		t.Fatalf("alice: %d", got.status)
	}
	for i := range 3 {
		if got := do(t, client, srv.URL, basicHeader("alice", "guess"+strconv.Itoa(i))); got.status != 401 {
			t.Fatalf("failure %d: %d, want 401 within the burst", i+1, got.status)
		}
	}
	checks := fx.h.Stats().Verifications
	for range 3 {
		got := do(t, client, srv.URL, basicHeader("alice", "guess"))
		if got.status != http.StatusTooManyRequests || got.body != "429 Too Many Requests\n" {
			t.Fatalf("past the burst: %d %q, want 429", got.status, got.body)
		}
		secs, err := strconv.Atoi(got.header.Get("Retry-After"))
		if err != nil || secs < 3500 || secs > 3600 {
			t.Errorf("Retry-After %q, want about an hour", got.header.Get("Retry-After"))
		}
	}
	if n := fx.h.Stats().Verifications; n != checks {
		t.Errorf("throttled guesses cost %d hash checks, want none", n-checks)
	}
	// alice, verified a moment ago, is not locked out by the guesser.
	if got := do(t, client, srv.URL, basicHeader("alice", "pw")); got.status != 200 {
		t.Errorf("alice's correct, recently verified password: %d, want 200", got.status)
	}
	// bob's password was never verified from here: checking it would answer
	// the guesser's question, so it waits like any other try.
	if got := do(t, client, srv.URL, basicHeader("bob", "pw")); got.status != http.StatusTooManyRequests {
		t.Errorf("bob's unverified password while throttled: %d, want 429", got.status)
	}
	// Another address has its own budget.
	if got := do(t, clientFrom(t, "127.0.0.2"), srv.URL, basicHeader("alice", "guess")); got.status != 401 {
		t.Errorf("another address: %d, want 401", got.status)
	}
	if n := log.Count("login failures over the limit"); n != 1 {
		t.Errorf("logged %d times, want once per burst:\n%s", n, log)
	}
	if !strings.Contains(log.String(), "addr=127.0.0.1/32") {
		t.Errorf("log does not name the address:\n%s", log)
	}
}

func TestSuccessfulLoginsNeverSpendTheFailureBudget(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	fx.h.CacheTTL = -1 // every login is a full check
	lim := &FailureLimiter{Rate: rate.Every(time.Hour), Burst: 2, Logger: (&logBuffer{}).Logger()}
	srv := serve(t, (&Basic{Realm: "r", Verifier: fx.h, Limiter: lim}).Wrap(echoUser))
	for i := range 10 {
		if got := do(t, srv.Client(), srv.URL, basicHeader("alice", "pw")); got.status != 200 {
			t.Fatalf("login %d: %d", i, got.status)
		}
	}
	for i, want := range []int{401, 401, 429} {
		if got := do(t, srv.Client(), srv.URL, basicHeader("alice", "x")); got.status != want {
			t.Errorf("failure %d: %d, want %d", i+1, got.status, want)
		}
	}
}

func TestConcurrentGuessesGetNoMoreChecksThanTheBurst(t *testing.T) {
	fx := newFixture(t, bcryptLine(t, "alice", "pw"))
	lim := &FailureLimiter{Rate: rate.Every(time.Hour), Burst: 3, Logger: (&logBuffer{}).Logger()}
	srv := serve(t, (&Basic{Realm: "r", Verifier: fx.h, Limiter: lim}).Wrap(echoUser))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() { do(t, srv.Client(), srv.URL, basicHeader("alice", "guess"+strconv.Itoa(i))) })
	}
	wg.Wait()
	if n := fx.h.Stats().Verifications; n > 3 {
		t.Errorf("%d hash checks for 20 concurrent guesses, want at most the burst of 3", n)
	}
}

func TestLimiterRefillsAndLogsOncePerBurst(t *testing.T) {
	clock := newFakeClock()
	log := &logBuffer{}
	lim := &FailureLimiter{Rate: 1, Burst: 2, Logger: log.Logger(), now: clock.Now}
	addr := netip.MustParseAddr("192.0.2.7")
	fail := func() (time.Duration, bool) {
		a, wait, throttled := lim.begin(addr)
		if !throttled {
			a.failed()
		}
		return wait, throttled
	}
	for round := 1; round <= 2; round++ {
		fail()
		fail()
		wait, throttled := fail()
		if !throttled || wait != time.Second {
			t.Fatalf("round %d: throttled %v wait %v, want 1s", round, throttled, wait)
		}
		fail()
		if n := log.Count("over the limit"); n != round {
			t.Fatalf("round %d: %d log lines, want one per burst", round, n)
		}
		clock.Advance(2 * time.Second) // refilled
	}
}

func TestLimiterKeysAndBounds(t *testing.T) {
	if limitKey(netip.MustParseAddr("2001:db8::1")) != limitKey(netip.MustParseAddr("2001:db8::ffff:1")) {
		t.Error("two addresses of one IPv6 /64 are counted apart")
	}
	if limitKey(netip.MustParseAddr("2001:db8:0:1::1")) == limitKey(netip.MustParseAddr("2001:db8::1")) {
		t.Error("two IPv6 /64s are counted together")
	}
	if limitKey(netip.MustParseAddr("::ffff:192.0.2.1")) != limitKey(netip.MustParseAddr("192.0.2.1")) {
		t.Error("an IPv4-mapped address is counted apart from its IPv4 address")
	}

	unix := &FailureLimiter{Rate: 1, Burst: 1, Logger: (&logBuffer{}).Logger()}
	at, _, _ := unix.begin(netip.Addr{}) // RemoteAddr "@" of a unix socket
	at.failed()
	if _, _, throttled := unix.begin(netip.Addr{}); !throttled {
		t.Error("peers without an IP address are not limited")
	}

	lim := &FailureLimiter{Rate: 1, Burst: 1, MaxAddrs: 2, Logger: (&logBuffer{}).Logger()}
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		at, _, _ := lim.begin(netip.MustParseAddr(a))
		at.failed()
	}
	if n := len(lim.addrs); n != 2 {
		t.Errorf("tracking %d addresses, want at most 2", n)
	}
	if _, ok := lim.addrs[limitKey(netip.MustParseAddr("192.0.2.1"))]; ok {
		t.Error("the least recently seen address was kept")
	}
}

func TestZeroRateOrBurstDisablesTheLimit(t *testing.T) {
	for _, lim := range []*FailureLimiter{nil, {Rate: 0, Burst: 5}, {Rate: 1, Burst: 0}} {
		for range 10 {
			a, _, throttled := lim.begin(netip.MustParseAddr("192.0.2.1"))
			if throttled {
				t.Fatalf("%+v throttled", lim)
			}
			a.failed()
		}
	}
}

func TestUserFromContext(t *testing.T) {
	if _, ok := UserFrom(context.Background()); ok {
		t.Error("a user from an empty context")
	}
	u, ok := UserFrom(WithUser(context.Background(), User{Name: "alice", AuthType: "Basic"}))
	if !ok || u.Name != "alice" || u.AuthType != "Basic" {
		t.Errorf("got %+v %v", u, ok)
	}
}

// FuzzBasicCredentials checks that no Authorization value crashes the
// decoder and that what it accepts obeys RFC 7617 §2.
func FuzzBasicCredentials(f *testing.F) {
	for _, s := range []string{"YWxpY2U6cHc=", "OnB3", "YWxpY2U=", "!!!", "", "YTpiOmM=", "AAE6AA=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, creds string) {
		user, password, ok := decodeBasic(creds)
		if !ok {
			return
		}
		if err := CheckUserName(user); err != nil {
			t.Fatalf("accepted user: %v", err)
		}
		if len(password) > maxPasswordLen || hasControlBytes(string(password)) {
			t.Fatalf("accepted password %q", password)
		}
	})
}
