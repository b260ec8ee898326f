//go:build !(cgo && linux && amd64)

package spawn

import "syscall"

// startExec is Go's own fork where suserve's (clone_linux_amd64.go) is not
// built: without cgo, or on other architectures. That fork holds a Go
// processor until the child execs, so on a spawner with one P spawns take
// turns (see docs/security.md).
func startExec(argv0 string, argv, env []string, dir string, files []uintptr, sys *syscall.SysProcAttr) (started, error) {
	return startGo(argv0, argv, env, dir, files, sys)
}
