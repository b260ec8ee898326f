package spawn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/suserve/suserve/internal/identity"
)

// Spec is one program to start.
type Spec struct {
	Path     string   // the program, absolute
	Args     []string // argv; Args[0] is the program's name (Path when empty)
	Env      []string // KEY=VALUE; filtered, and HOME, USER, LOGNAME, PATH replaced
	Dir      string   // working directory; "" is the program's directory
	Identity string   // who the program runs as; "" is the server's own user
	Route    string   // the route that chose the program, for messages
	RouteDir string   // the directory the program must lie beneath
	Mode     string   // ModeSelf, ModeAuthenticated, ModeOwner or ModeAccount; decides the owner check

	// The program's standard streams; nil is /dev/null. Start does not
	// close them.
	Stdin, Stdout, Stderr *os.File
}

// Default policy values for the zero Local.
const (
	DefaultUIDMin = 1000
	DefaultGIDMin = 1000
	DefaultPath   = "/usr/local/bin:/usr/bin:/bin"
)

// Local starts programs from this process: as other identities when it is
// root, as its own user otherwise. The zero Local runs programs as the
// server's own user with no cells.
type Local struct {
	Identities identity.Source // resolves Spec.Identity; nil allows only ""
	UIDMin     uint32          // lowest uid a program may run as; 0 is DefaultUIDMin
	GIDMin     uint32          // lowest primary gid; 0 is DefaultGIDMin
	Path       string          // the fixed PATH; "" is DefaultPath
	PassEnv    []string        // variables programs get from this process's environment (config pass_env); see SetPassEnv
	Cells      Cells           // nil: no cells, Kill kills the process group

	selfOnce sync.Once
	self     identity.Identity
	selfErr  error
	nullOnce sync.Once
	null     *os.File
	nullErr  error
	passEnv  atomic.Pointer[[]string] // set by SetPassEnv
}

// umaskOnce sets the process's umask to 022. The umask is a process
// attribute, not a thread's, and ForkExec has no per-child setting: the
// only way to start every program with 022 without racing other goroutines
// is for the whole server to run with it. 022 is also what a server's own
// files want; suserve creates its private files with explicit modes.
var umaskOnce sync.Once

// Start checks policy for s, starts the program and returns it. Every
// refusal and exec failure is a *Failure (errors.As). When ctx ends before
// the program does, its tree is killed, as with os/exec.CommandContext.
func (l *Local) Start(ctx context.Context, s *Spec) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !validMode(s.Mode) {
		return nil, refuse(BadMode, s.Path, "run-as mode %q (route %s) is none of self, authenticated, owner, account", s.Mode, s.Route)
	}
	id, cred, err := l.resolve(s.Identity)
	if err != nil {
		return nil, err
	}
	prog, err := openChecked(s.Path, s.RouteDir, id, s.Mode)
	if err != nil {
		return nil, err
	}
	defer prog.close()
	var sb shebang
	if prog.script {
		sb, _ = parseShebang(prog.head)
		if sb.endsInCR() {
			return nil, crFailure(prog.path, sb)
		}
	}

	files, err := l.stdio(s)
	if err != nil {
		return nil, err
	}
	// The child's descriptor shuffle writes over numbers just above the
	// highest of files; the descriptors the exec and the chdir name must
	// lie beyond it.
	if err := prog.raiseAbove(execFloor(files)); err != nil {
		return nil, &Failure{Kind: ExecFailed, Path: s.Path, Detail: "dup: " + err.Error(), Exit: -1, Err: err}
	}

	// The working directory is entered through the checked directory's
	// descriptor when it is the program's own, so it is the directory the
	// checks saw.
	dir := "/proc/self/fd/" + strconv.Itoa(prog.dirfd)
	shownDir := filepath.Dir(prog.path)
	if s.Dir != "" && filepath.Clean(s.Dir) != shownDir {
		dir, shownDir = s.Dir, s.Dir
		fi, err := os.Stat(dir)
		switch {
		case err != nil:
			return nil, &Failure{Kind: BadDir, Path: s.Path, Detail: "working directory: " + err.Error(), Exit: -1, Err: err}
		case !fi.IsDir():
			return nil, &Failure{Kind: BadDir, Path: s.Path, Detail: "working directory " + dir + " is not a directory", Exit: -1}
		}
	}

	// The exec goes through the checked descriptor, never through the path
	// again: a file swapped for another (or for a symlink) after the checks
	// cannot be what runs. A binary is executed as /proc/self/fd/N, where
	// N is the close-on-exec descriptor the child inherited from the fork:
	// the kernel opens the descriptor's file, and N is gone in the
	// program. A #! script cannot be run that way: the kernel hands the
	// interpreter a path to open, and a close-on-exec descriptor's path is
	// gone by then. So a script's descriptor is given to it as fd 3 and the
	// interpreter reads /dev/fd/3. The script sees its own file (read-only)
	// as fd 3 and "/dev/fd/3" as its $0; SCRIPT_FILENAME names it. Exec by
	// path instead (what suEXEC does) leaves a window between the checks
	// and the interpreter's open in which the file can be swapped.
	argv0 := "/proc/self/fd/" + strconv.Itoa(prog.fd)
	if prog.script {
		files = append(files, uintptr(prog.fd))
		argv0 = "/dev/fd/3"
	}
	args := s.Args
	if len(args) == 0 {
		args = []string{s.Path}
	}
	env := l.environ(s.Env, id)

	return l.fork(ctx, &checked{id: id, cred: cred, prog: prog, path: s.Path, argv0: argv0, args: args, env: env, dir: dir, shownDir: shownDir, files: files})
}

// resolve turns Spec.Identity into the identity to run as and the
// credential to switch to (nil: stay the server's own user).
func (l *Local) resolve(name string) (identity.Identity, *syscall.Credential, error) {
	root := os.Geteuid() == 0
	var id identity.Identity
	if name == "" {
		self, err := l.selfIdentity()
		if err != nil {
			return id, nil, &Failure{Kind: ExecFailed, Detail: "the server's own identity: " + err.Error(), Exit: -1, Err: err}
		}
		if root {
			return id, nil, refuse(RootIdentity, "", "the server runs as root and the program names no identity: programs never run as root")
		}
		return self, nil, nil
	}
	if l.Identities == nil {
		return id, nil, refuse(UnknownIdentity, "", "identity %q: no identity source is configured", name)
	}
	id, err := l.Identities.Lookup(name)
	if err != nil {
		var pe *identity.PolicyError
		switch {
		case errors.Is(err, identity.ErrUnknown):
			return id, nil, &Failure{Kind: UnknownIdentity, Detail: fmt.Sprintf("identity %q: %v", name, err), Exit: -1, Err: err}
		case errors.As(err, &pe):
			c := BelowMinimum
			if pe.Reason == identity.RootUID || pe.Reason == identity.RootGID || pe.Reason == identity.RootGroup {
				c = RootIdentity
			}
			return id, nil, &Failure{Kind: c, Detail: pe.Error(), Exit: -1, Err: err}
		}
		return id, nil, &Failure{Kind: ExecFailed, Detail: fmt.Sprintf("identity %q: %v", name, err), Exit: -1, Err: err}
	}
	if !root {
		// Without root the only identity a program can have is ours.
		if id.UID != uint32(os.Getuid()) {
			return id, nil, refuse(NotSelf, "", "identity %s (uid %d): the server is not root and can only run programs as its own user (uid %d)", id.Name, id.UID, os.Getuid())
		}
		return id, nil, nil
	}
	uidMin, gidMin := l.UIDMin, l.GIDMin
	if uidMin == 0 {
		uidMin = DefaultUIDMin
	}
	if gidMin == 0 {
		gidMin = DefaultGIDMin
	}
	if err := checkIdentity(id, uidMin, gidMin); err != nil {
		return id, nil, err
	}
	return id, &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups}, nil
}

// selfIdentity is the server's own user, for programs run as it.
func (l *Local) selfIdentity() (identity.Identity, error) {
	l.selfOnce.Do(func() {
		l.self, l.selfErr = identity.Self(&identity.System{})
		if l.selfErr != nil {
			// Unreadable account files still leave the kernel's ids.
			l.self, l.selfErr = identity.Self(nil)
		}
	})
	return l.self, l.selfErr
}

// stdio returns the descriptors of the program's standard streams.
func (l *Local) stdio(s *Spec) ([]uintptr, error) {
	files := make([]uintptr, 3, 4)
	for i, f := range []*os.File{s.Stdin, s.Stdout, s.Stderr} {
		if f == nil {
			l.nullOnce.Do(func() { l.null, l.nullErr = os.OpenFile(os.DevNull, os.O_RDWR, 0) })
			if l.nullErr != nil {
				return nil, &Failure{Kind: ExecFailed, Path: s.Path, Detail: l.nullErr.Error(), Exit: -1, Err: l.nullErr}
			}
			f = l.null
		}
		files[i] = f.Fd()
	}
	return files, nil
}

// environ is env filtered to the names that are safe to hand a program
// run as another user, with the identity's HOME, USER and LOGNAME, the
// fixed PATH and the pass_env variables. A name outside the list could
// change what the program runs or loads (LD_PRELOAD, BASH_ENV, PERL5OPT,
// ...), which a request, or a front that has been compromised, must never
// choose. The pass_env values are this process's own, whatever env says:
// across the privilege boundary the spawner's, since the front does not
// hold the server's environment.
func (l *Local) environ(env []string, id identity.Identity) []string {
	pass := l.passEnvNames()
	out := l.identityEnv(env, id, func(name string) bool {
		return !slices.Contains(pass, name) && safeEnv(name)
	})
	for _, n := range pass {
		if v, ok := os.LookupEnv(n); ok {
			out = append(out, n+"="+v)
		}
	}
	return out
}

// identityEnv is the entries of env whose names keep allows, then the
// identity's HOME, USER and LOGNAME and the fixed PATH.
func (l *Local) identityEnv(env []string, id identity.Identity, keep func(name string) bool) []string {
	out := make([]string, 0, len(env)+4)
	for _, kv := range env {
		name, _, ok := strings.Cut(kv, "=")
		if ok && keep(name) {
			out = append(out, kv)
		}
	}
	path := l.Path
	if path == "" {
		path = DefaultPath
	}
	home := id.Home
	if home == "" {
		home = "/"
	}
	return append(out, "HOME="+home, "USER="+id.Name, "LOGNAME="+id.Name, "PATH="+path)
}

// SetPassEnv replaces PassEnv, as a configuration reload does: programs
// started from then on keep these names. Safe while programs start.
func (l *Local) SetPassEnv(names []string) {
	names = slices.Clone(names)
	l.passEnv.Store(&names)
}

func (l *Local) passEnvNames() []string {
	if p := l.passEnv.Load(); p != nil {
		return *p
	}
	return l.PassEnv
}

// safeEnv reports whether a variable of a request's environment may reach
// a program: the CGI meta-variables and the request's header fields.
func safeEnv(name string) bool {
	switch name {
	case "HOME", "USER", "LOGNAME", "PATH", "HTTP_PROXY":
		// Replaced by the identity's, or (HTTP_PROXY, from a "Proxy:"
		// request header) never passed: httpoxy.
		return false
	}
	if safeNames[name] {
		return true
	}
	for _, p := range []string{"HTTP_", "SSL_", "REDIRECT_", "LC_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// safeNames are the CGI meta-variables (RFC 3875 §4.1) and the extras Apache
// suEXEC passes (its safe_env_lst), plus the locale.
var safeNames = map[string]bool{
	"AUTH_TYPE": true, "CONTENT_LENGTH": true, "CONTENT_TYPE": true, "GATEWAY_INTERFACE": true,
	"PATH_INFO": true, "PATH_TRANSLATED": true, "QUERY_STRING": true, "REMOTE_ADDR": true,
	"REMOTE_HOST": true, "REMOTE_IDENT": true, "REMOTE_PORT": true, "REMOTE_USER": true,
	"REQUEST_METHOD": true, "SCRIPT_NAME": true, "SERVER_NAME": true, "SERVER_PORT": true,
	"SERVER_PROTOCOL": true, "SERVER_SOFTWARE": true,
	"CONTEXT_DOCUMENT_ROOT": true, "CONTEXT_PREFIX": true, "DOCUMENT_ROOT": true, "HTTPS": true,
	"REQUEST_SCHEME": true, "REQUEST_URI": true, "SCRIPT_FILENAME": true, "SCRIPT_URI": true,
	"SCRIPT_URL": true, "SERVER_ADDR": true, "SERVER_ADMIN": true, "SERVER_SIGNATURE": true,
	"UNIQUE_ID": true, "TZ": true, "LANG": true,
}
