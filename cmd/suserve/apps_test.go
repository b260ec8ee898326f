package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/testutil"
)

// phpApp writes dir/php/index.php, a page that says its euid and pid, and
// returns the [[app]] section that serves it at /php/ under php-cgi as
// alice.
func phpApp(t *testing.T, dir string) string {
	t.Helper()
	php := filepath.Join(dir, "php")
	if err := os.Mkdir(php, 0o755); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(php, "index.php")
	if err := os.WriteFile(page, []byte(`<?php echo posix_geteuid(), " ", getmypid(), "\n";`), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[[app]]
path = "/php/"
protocol = "fastcgi"
dir = %q
command = ["/usr/bin/php-cgi"]
run_as = "account"
account = "alice"
workers = 1
`, php)
}

// TestAppWorkersRunBehindThePrivilegeBoundary: suserve started as root
// serves a PHP app under Debian's php-cgi through FastCGI. The worker runs
// as the app's account, is the spawner's child (the front, which creates
// and alone reaches its socket, never holds root to start it), and is gone
// when suserve stops.
func TestAppWorkersRunBehindThePrivilegeBoundary(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/usr/bin/php-cgi"); err != nil {
		t.Skip("php-cgi is not installed (apt-get install php-cgi)")
	}
	in := startSuserveWith(t, `backend = "auto"`, func(dir string) string { return phpApp(t, dir) })
	out, err := in.get("/php/index.php", 10*time.Second)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, in.log.String())
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != strconv.Itoa(testutil.AliceUID) {
		t.Fatalf("the page says %q, want the euid %d and a pid", out, testutil.AliceUID)
	}
	pid, _ := strconv.Atoi(f[1])
	// php-cgi serves from a child of its own when PHP_FCGI_CHILDREN is
	// set; either way the process tree starts at the spawner.
	worker := pid
	for st := status(worker); st["PPid"] != strconv.Itoa(in.cmd.Process.Pid); st = status(worker) {
		if st["PPid"] == "" || st["PPid"] == "1" {
			t.Fatalf("the PHP process %d is not below the spawner %d", pid, in.cmd.Process.Pid)
		}
		worker, _ = strconv.Atoi(st["PPid"])
	}
	if uid := strings.Fields(status(worker)["Uid"]); len(uid) == 0 || uid[0] != strconv.Itoa(testutil.AliceUID) {
		t.Errorf("the worker %d runs as uid %v, want %d", worker, uid, testutil.AliceUID)
	}
	// It counts against alice's cell, as her programs do.
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", worker)); !strings.Contains(string(cg), "/alice~") {
		t.Errorf("the worker is in no cell of alice's:\n%s", cg)
	}
	// A second request reaches the same persistent worker.
	if again, err := in.get("/php/index.php", 10*time.Second); err != nil || again != out {
		t.Errorf("second request: %q, %v; want %q from the same worker", again, err, out)
	}
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-in.done
	gone(t, worker, 5*time.Second)
	gone(t, pid, 5*time.Second)
}

// TestSIGHUPAddsAndRemovesAnAppBehindTheBoundary: an app that a reload
// adds to a configuration that had none runs through the spawner as its
// account (the spawner makes the front's socket directory first), and one
// that a reload removes has its worker stopped.
func TestSIGHUPAddsAndRemovesAnAppBehindTheBoundary(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/usr/bin/php-cgi"); err != nil {
		t.Skip("php-cgi is not installed (apt-get install php-cgi)")
	}
	in := startSuserve(t, `backend = "none"`)
	base, err := os.ReadFile(filepath.Join(in.dir, "suserve.toml"))
	if err != nil {
		t.Fatal(err)
	}
	in.reload(string(base)+phpApp(t, in.dir), "configuration reloaded")
	out, err := in.get("/php/index.php", 10*time.Second)
	f := strings.Fields(out)
	if err != nil || len(f) != 2 || f[0] != strconv.Itoa(testutil.AliceUID) {
		t.Fatalf("the app a reload added: %q %v", out, err)
	}
	pid, _ := strconv.Atoi(f[1])

	in.reload(string(base), "configuration reloaded")
	if out, err := in.get("/php/index.php", 5*time.Second); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("the app a reload removed: %q %v, want 404", out, err)
	}
	gone(t, pid, 15*time.Second)
}
