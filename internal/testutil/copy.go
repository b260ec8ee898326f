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
	cmd := rerun(t, os.Args[0], wrap...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Errorf("%s: %v\n%s", what, err, out)
	}
}

// rerun is the command that runs t alone, verbosely, in bin (this test
// binary or a copy of it), under wrap when given.
func rerun(t *testing.T, bin string, wrap ...string) *exec.Cmd {
	args := append(append([]string{}, wrap...), bin, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	return exec.Command(args[0], args[1:]...)
}
