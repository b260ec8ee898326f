package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RunCopy runs t again in a copy of this test process, for what a test
// cannot undo in its own (a seccomp filter) or must set before the process
// starts (a resource limit): env is added to the copy's environment, and
// wrap, when given, is the command the copy runs under (prlimit ...). t
// fails, naming what, unless the copy ran t and t passed there.
func RunCopy(t *testing.T, what string, wrap []string, env ...string) {
	t.Helper()
	args := append(append([]string{}, wrap...), os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Errorf("%s: %v\n%s", what, err, out)
	}
}
