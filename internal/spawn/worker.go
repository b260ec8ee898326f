package spawn

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/identity"
)

// WorkerSpec is one persistent application worker ([[app]]) to start. Its
// program is the app's configured command, an operator-installed program
// such as /usr/bin/php-cgi that lies in no route directory, so it gets the
// checks that suit a system program (see StartWorker) instead of a route's.
type WorkerSpec struct {
	Path     string   // the program, absolute; symlinks in it are the operator's and are followed
	Args     []string // argv; Args[0] is the program's name (Path when empty)
	Env      []string // KEY=VALUE, from the configuration and the pool; HOME, USER, LOGNAME, PATH replaced
	Dir      string   // working directory; "" is "/"
	Identity string   // who the worker runs as; "" is the server's own user
	App      string   // the app's name (its URL path), for messages
	// Socket and Slot are the worker's socket path and number in its pool,
	// which the spawner puts in the environment behind the privilege
	// boundary (Client.StartWorker); Local takes Env as it is.
	Socket string
	Slot   int

	// The worker's standard streams (nil is /dev/null) and the descriptors
	// it inherits as 3, 4, ...: a FastCGI worker's listening socket is its
	// Stdin (FastCGI 1.0 §2.2), an HTTP worker's is ExtraFiles[0]
	// (LISTEN_FDS). No other descriptor survives. StartWorker does not
	// close them.
	Stdin, Stdout, Stderr *os.File
	ExtraFiles            []*os.File
}

// maxExtraFiles bounds the descriptors a worker inherits besides 0-2: its
// socket, and not a table of them.
const maxExtraFiles = 8

// StartWorker checks policy for s, starts the worker as its identity in
// that identity's cell and returns it. Stop it with Signal (SIGTERM) and
// Kill, which kills its whole tree (its cell's group when cells are on).
//
// The identity policy is Start's: never uid 0, gid 0 or group 0, and at or
// above UIDMin and GIDMin. The program must be a regular file that is not
// setuid or setgid, not writable by group or others, owned by root (or,
// when the server is not root, by the server's own user), executable by
// the identity, with every directory on its resolved path owned by root
// and not writable by group or others unless sticky. Every refusal is a
// *Failure with its own Cause.
func (l *Local) StartWorker(ctx context.Context, s *WorkerSpec) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id, cred, err := l.resolve(s.Identity)
	if err != nil {
		return nil, err
	}
	if len(s.ExtraFiles) > maxExtraFiles {
		return nil, &Failure{Kind: ExecFailed, Path: s.Path, Detail: "too many inherited descriptors: " + strconv.Itoa(len(s.ExtraFiles)), Exit: -1}
	}
	prog, err := openCommand(s.Path, id)
	if err != nil {
		return nil, err
	}
	defer prog.close()
	if prog.script {
		if sb, _ := parseShebang(prog.head); sb.endsInCR() {
			return nil, crFailure(prog.path, sb)
		}
	}

	dir := s.Dir
	if dir == "" {
		dir = "/"
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, &Failure{Kind: BadDir, Path: s.Path, Detail: "working directory: " + err.Error(), Exit: -1, Err: err}
	} else if !fi.IsDir() {
		return nil, &Failure{Kind: BadDir, Path: s.Path, Detail: "working directory " + dir + " is not a directory", Exit: -1}
	}

	files, err := l.stdio(&Spec{Path: s.Path, Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr})
	if err != nil {
		return nil, err
	}
	for _, f := range s.ExtraFiles {
		files = append(files, f.Fd())
	}
	// The child's descriptor shuffle writes over numbers just above the
	// highest of files (execFloor): the exec descriptor must lie beyond it.
	if err := prog.raiseAbove(execFloor(files)); err != nil {
		return nil, &Failure{Kind: ExecFailed, Path: s.Path, Detail: "dup: " + err.Error(), Exit: -1, Err: err}
	}
	// A binary is executed through its checked descriptor, as Start does.
	// A #! script cannot be (the interpreter opens a path, and descriptor 3
	// is the worker's socket), so it is executed by its resolved path:
	// openCommand established that only root can change that path or the
	// file.
	argv0 := "/proc/self/fd/" + strconv.Itoa(prog.fd)
	if prog.script {
		argv0 = prog.path
	}
	args := s.Args
	if len(args) == 0 {
		args = []string{s.Path}
	}
	env := l.workerEnviron(s.Env, id)

	return l.fork(ctx, &checked{id: id, cred: cred, prog: prog, path: s.Path, argv0: argv0, args: args, env: env, dir: dir, shownDir: dir, files: files})
}

// Signal sends sig to the program through its pidfd, which cannot name a
// reused pid: SIGTERM asks a worker to stop gracefully (its children are
// its to stop; Kill takes the whole tree). It returns os.ErrProcessDone
// once the program has been reaped.
func (p *Process) Signal(sig syscall.Signal) error {
	st := p.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reaped {
		return os.ErrProcessDone
	}
	rc, err := st.pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	if serr == unix.ESRCH {
		return os.ErrProcessDone
	}
	return serr
}

// workerEnviron is a worker's environment: what the operator configured
// and the pool added (socket variables), which no request chooses, with
// the identity's HOME, USER and LOGNAME and the fixed PATH.
func (l *Local) workerEnviron(env []string, id identity.Identity) []string {
	return l.identityEnv(env, id, func(name string) bool {
		switch name {
		case "HOME", "USER", "LOGNAME", "PATH":
			return false
		}
		return true
	})
}

// openCommand opens an operator-configured program and applies the checks
// StartWorker documents. The path is resolved as configured (Debian's
// /usr/bin/php-cgi is a symlink through /etc/alternatives); the checks
// apply to the file it resolves to and to every directory above that file,
// so that nobody but root can replace what runs.
func openCommand(path string, id identity.Identity) (*program, error) {
	if !filepath.IsAbs(path) {
		return nil, refuse(Outside, path, "the command is not an absolute path")
	}
	for _, c := range strings.Split(path, "/") {
		if c == ".." {
			return nil, refuse(DotDot, path, "the path has a \"..\" component")
		}
	}
	// O_PATH first, as in openChecked: a FIFO or a device is refused
	// before it is opened for reading.
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openFailure(err, path, "")
	}
	p := &program{path: path, fd: fd, dirfd: -1}
	if err := unix.Fstat(fd, &p.st); err != nil {
		p.close()
		return nil, &Failure{Kind: ExecFailed, Path: path, Detail: "fstat: " + err.Error(), Exit: -1, Err: err}
	}
	if real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && filepath.IsAbs(real) {
		p.path = real
	}
	if err := checkCommand(p.path, &p.st, id); err != nil {
		p.close()
		return nil, err
	}
	if err := checkCommandDirs(p.path); err != nil {
		p.close()
		return nil, err
	}
	// program keeps its directory open too (raise moves both descriptors).
	if p.dirfd, err = unix.Open(filepath.Dir(p.path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
		p.close()
		return nil, openFailure(err, filepath.Dir(p.path), "directory")
	}
	if rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0); err == nil {
		unix.Close(fd)
		p.fd = rfd
		buf := make([]byte, 256)
		if n, _ := unix.Pread(rfd, buf, 0); n > 0 {
			p.head = buf[:n]
		}
		p.script = len(p.head) >= 2 && p.head[0] == '#' && p.head[1] == '!'
	}
	return p, nil
}

// checkCommand applies the checks on the program file itself: regular,
// not setuid/setgid, not writable by group or others, owned by root (or by
// the unprivileged server's own user), executable by the identity.
func checkCommand(path string, st *unix.Stat_t, id identity.Identity) error {
	m := st.Mode
	switch {
	case m&unix.S_IFMT != unix.S_IFREG:
		return refuse(NotRegular, path, "not a regular file (%s)", fileType(m))
	case m&(unix.S_ISUID|unix.S_ISGID) != 0:
		return refuse(SetID, path, "mode %04o has the setuid or setgid bit", m&0o7777)
	case m&0o022 != 0:
		return refuse(WritableFile, path, "mode %04o is writable by %s", m&0o7777, writers(m))
	case st.Uid != 0 && (os.Geteuid() == 0 || st.Uid != uint32(os.Geteuid())):
		return refuse(OwnerMismatch, path, "owned by uid %d: an app's command must be owned by root", st.Uid)
	case !executableBy(st, id):
		return refuse(NoExecBit, path, "mode %04o, owner %d, group %d: no execute permission for uid %d", m&0o7777, st.Uid, st.Gid, id.UID)
	}
	return nil
}

// checkCommandDirs refuses a program whose directory, or a directory above
// it, someone other than root could change: not owned by root (or the
// unprivileged server's user), or writable by group or others without the
// sticky bit (a sticky directory such as /tmp lets nobody rename or remove
// root's entries).
func checkCommandDirs(path string) error {
	self := uint32(os.Geteuid())
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err != nil {
			return openFailure(err, d, "directory")
		}
		switch {
		case st.Uid != 0 && st.Uid != self:
			return refuse(WritableDir, d, "directory owned by uid %d, which could replace the command", st.Uid)
		case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
			return refuse(WritableDir, d, "directory mode %04o is writable by %s", st.Mode&0o7777, writers(st.Mode))
		}
		if d == "/" {
			return nil
		}
	}
}
