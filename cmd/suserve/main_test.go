package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckReportsEveryMistakeWithItsLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "suserve.toml")
	conf := `[server]
listen = "127.0.0.1:8080"
colour = "blue"

[cgi]
max_request_body = "32 parsecs"

[[route]]
path = "/cgi-bin/"
dir = "/srv/cgi-bin"
run_as = "somebody"
`
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "check", "-config", file)
	if code != 1 {
		t.Fatalf("check exited %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		file + ":3:", // the unknown key
		"colour",     //
		file + ":6:", // the bad size
		"max_request_body",
		file + ":11:", // the bad run_as
		"run_as",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check output lacks %q:\n%s", want, stderr)
		}
	}
}

func TestCheckSummarisesAGoodConfig(t *testing.T) {
	code, stdout, stderr := runCmd(t, "check")
	if code != 0 {
		t.Fatalf("check of the embedded default exited %d:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "ok") || !strings.Contains(stdout, "/cgi-bin/") {
		t.Errorf("summary does not show the route:\n%s", stdout)
	}
	// Which cell backend "auto" picks here, and why.
	if !strings.Contains(stdout, "cells on this host: cgroup") && !strings.Contains(stdout, "cells on this host: none") {
		t.Errorf("check does not say which cell backend it would use:\n%s", stdout)
	}
}

func TestCheckOfAMissingFileFails(t *testing.T) {
	code, _, stderr := runCmd(t, "check", "-config", filepath.Join(t.TempDir(), "nope.toml"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
}

func TestServeSaysWhenThePortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := runCmd(t, "serve", "-listen", ln.Addr().String())
	if code == 0 {
		t.Fatal("serve on a taken port exited 0")
	}
	for _, want := range []string{"already in use", ln.Addr().String(), "-listen"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("message lacks %q:\n%s", want, stderr)
		}
	}
}

func TestCapacityPrintsTheArithmeticAndTheTable(t *testing.T) {
	code, stdout, stderr := runCmd(t, "capacity")
	if code != 0 {
		t.Fatalf("capacity exited %d: %s", code, stderr)
	}
	for _, want := range []string{"budget 4GiB / cell_memory 256MiB = 16 cells", "* 256MiB", "host memory"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("capacity output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestPasswdSetsAndDeletesAUserFromStdin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "htpasswd")
	var out, errb bytes.Buffer
	if code := passwd([]string{"-file", file, "-cost", "4", "carol"}, strings.NewReader("s3cret\n"), &out, &errb); code != 0 {
		t.Fatalf("passwd: %d %s", code, errb.String())
	}
	b, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(b), "carol:$2a$04$") {
		t.Fatalf("htpasswd after passwd: %q", b)
	}
	if code := passwd([]string{"-file", file, "dave"}, strings.NewReader(""), &out, &errb); code != 1 || !strings.Contains(errb.String(), "no password") {
		t.Errorf("an empty stdin set a password: %d %s", code, errb.String())
	}
	if code := passwd([]string{"-file", file, "-delete", "carol"}, nil, &out, &errb); code != 0 {
		t.Fatalf("passwd -delete: %d %s", code, errb.String())
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), "carol") {
		t.Errorf("carol is still in the file: %q", b)
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	if code, out, _ := runCmd(t, "version"); code != 0 || !strings.HasPrefix(out, "suserve/") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, stderr := runCmd(t, "frobnicate"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: %d %q", code, stderr)
	}
}
