// Package testutil holds the few helpers that tests of several parts share:
// the root requirement and spare test identities.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips t when the test process is not root, stating why, or fails
// it when SUSERVE_TEST_ROOT=require (as in CI), so that root-only tests never
// pass by being skipped.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SUSERVE_TEST_ROOT") == "require" {
		t.Fatalf("this test needs root (setuid, cgroups or privilege separation) and SUSERVE_TEST_ROOT=require")
	}
	t.Skip("needs root: setuid, cgroups or privilege separation; run as root, or set SUSERVE_TEST_ROOT=require to make this a failure")
}

// Spare uids and gids for test identities. No system account uses them; tests
// chown fixtures to them and describe them in static identity tables.
const (
	AliceUID = 61001
	BobUID   = 61002
	CarolUID = 61003
	LowUID   = 500 // below the default uid_min of 1000
)
