package spawn

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/identity"
)

// Run-as modes (DESIGN.md "Run-as modes"). They decide whom the program
// file must belong to.
const (
	ModeSelf          = "self"          // the server's own user: owned by it or by root
	ModeAuthenticated = "authenticated" // installed by the operator: owned by root or the identity
	ModeOwner         = "owner"         // the script's owner chosen by the URL: owned by the identity
	ModeAccount       = "account"       // a service account: owned by the identity
)

// beneath is how every component is resolved: inside the directory opened
// so far, through no symlink and no /proc magic link. One component at a
// time, so that every directory on the way is checked on the descriptor
// that leads to the next one.
var beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// program is a checked program: the descriptors the exec goes through, so
// that what runs is the inode the checks saw, whatever happens to the path
// afterwards.
type program struct {
	path   string
	fd     int // the file: O_RDONLY when readable, else O_PATH; close-on-exec
	dirfd  int // its directory, O_PATH, close-on-exec
	st     unix.Stat_t
	head   []byte // up to the first 256 bytes (the kernel's BINPRM_BUF_SIZE)
	script bool   // head starts with "#!"
}

func (p *program) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
	}
	if p.dirfd >= 0 {
		unix.Close(p.dirfd)
	}
}

// execFloor is the lowest descriptor number that the child of startExec
// leaves alone before its execve, given the descriptors files. Both
// children startExec may be (su_child in clone_linux_amd64.go, and
// forkAndExecInChild1 in Go's syscall/exec_linux.go) set nextfd to one
// above the highest of len(files) and every number in files; Go's moves
// its status pipe there when the pipe's number is lower (suserve's puts its
// status pipe at this floor or above before the fork, so the bound below
// is one or two higher than it needs); and each
// moves each file whose number is below its slot to the numbers after
// that, with dup3 over whatever those numbers held; then it dups the files
// onto 0..len(files)-1. A descriptor the exec names (/proc/self/fd/N) must
// lie above all of that: the files are the caller's, their numbers can be
// anything, and a request's streams opened after other requests closed
// theirs often sit just below the program's descriptor. The floor reserves
// one slot more than files has, for a script's descriptor 3.
func execFloor(files []uintptr) int {
	slots := len(files) + 1
	top := slots
	for _, f := range files {
		top = max(top, int(f))
	}
	// top+1 is nextfd; then the pipe, a slot skipped for it, and one
	// number per file moved up.
	return top + 1 + 2 + slots
}

// raiseAbove moves the descriptors the child uses to floor or above, out of
// the way of the child's descriptor shuffle (see execFloor). The working
// directory is entered before the shuffle, but dirfd is moved too so that
// its safety does not hang on that order.
func (p *program) raiseAbove(floor int) error {
	for _, fd := range []*int{&p.fd, &p.dirfd} {
		if *fd >= floor {
			continue
		}
		n, err := unix.FcntlInt(uintptr(*fd), unix.F_DUPFD_CLOEXEC, floor)
		if err != nil {
			return err
		}
		unix.Close(*fd)
		*fd = n
	}
	return nil
}

// validMode reports whether mode is a run-as mode; "" is ModeSelf.
func validMode(mode string) bool {
	switch mode {
	case "", ModeSelf, ModeAuthenticated, ModeOwner, ModeAccount:
		return true
	}
	return false
}

// openChecked opens the program at path, which must lie beneath routeDir,
// and applies every file check of DESIGN.md "Run-as modes" for id in mode.
// Each refusal is a *Failure with its own Cause. The route directory itself
// is resolved as configured (symlinks in the operator's configuration are
// the operator's choice); below it, no symlink is followed.
func openChecked(path, routeDir string, id identity.Identity, mode string) (*program, error) {
	if routeDir == "" || !filepath.IsAbs(routeDir) {
		return nil, refuse(NoRouteDir, path, "the route gives no absolute directory (%q) to confine the program to", routeDir)
	}
	if !filepath.IsAbs(path) {
		return nil, refuse(Outside, path, "not an absolute path")
	}
	for _, c := range strings.Split(path, "/") {
		if c == ".." {
			return nil, refuse(DotDot, path, "the path has a \"..\" component")
		}
	}
	rd, clean := filepath.Clean(routeDir), filepath.Clean(path)
	rel, ok := strings.CutPrefix(clean, strings.TrimSuffix(rd, "/")+"/")
	if !ok || rel == "" {
		return nil, refuse(Outside, path, "not under the route directory %s", rd)
	}

	root, err := unix.Open(rd, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openFailure(err, rd, "route directory")
	}
	dirfd, dirPath := root, rd
	defer func() {
		if dirfd != root {
			unix.Close(root)
		}
	}()
	fail := func(err error) (*program, error) {
		unix.Close(dirfd)
		return nil, err
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		var st unix.Stat_t
		if err := unix.Fstat(dirfd, &st); err != nil {
			return fail(&Failure{Kind: ExecFailed, Path: dirPath, Detail: "fstat: " + err.Error(), Exit: -1, Err: err})
		}
		if st.Mode&0o022 != 0 {
			return fail(refuse(WritableDir, dirPath, "directory mode %04o is writable by %s", st.Mode&0o7777, writers(st.Mode)))
		}
		if i == len(comps)-1 {
			break
		}
		next, err := unix.Openat2(dirfd, c, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: uint64(beneath)})
		if errors.Is(err, unix.ENOTDIR) {
			// O_NOFOLLOW|O_DIRECTORY on a symlink says "not a
			// directory": tell a symlink from a file.
			var lst unix.Stat_t
			if unix.Fstatat(dirfd, c, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil && lst.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		if err != nil {
			return fail(walkFailure(err, root, rel, filepath.Join(dirPath, c)))
		}
		if dirfd != root {
			unix.Close(dirfd)
		}
		dirfd, dirPath = next, filepath.Join(dirPath, c)
	}
	if dirfd == root {
		// The program's directory is the route directory: keep a
		// descriptor of its own so that the deferred close spares it.
		d, err := unix.FcntlInt(uintptr(root), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return fail(&Failure{Kind: ExecFailed, Path: rd, Detail: "dup: " + err.Error(), Exit: -1, Err: err})
		}
		dirfd = d
	}

	// O_PATH first: opening a device or a FIFO for reading could block or
	// have effects; only a regular file is opened for reading, below.
	fd, err := unix.Openat2(dirfd, comps[len(comps)-1], &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: uint64(beneath)})
	if err != nil {
		return fail(walkFailure(err, root, rel, clean))
	}
	p := &program{path: clean, fd: fd, dirfd: dirfd}
	if err := unix.Fstat(fd, &p.st); err != nil {
		p.close()
		return nil, &Failure{Kind: ExecFailed, Path: clean, Detail: "fstat: " + err.Error(), Exit: -1, Err: err}
	}
	if p.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// O_PATH|O_NOFOLLOW opens a final symlink itself rather than
		// failing: the same refusal as a symlink on the way.
		err := walkFailure(unix.ELOOP, root, rel, clean)
		p.close()
		return nil, err
	}
	if err := checkFile(clean, &p.st, id, mode); err != nil {
		p.close()
		return nil, err
	}
	// Reopen through the descriptor's magic link: the same inode, now for
	// reading, so that the #! line is read from the file that was checked.
	// A file the server may not read (an execute-only binary when not
	// root) keeps its O_PATH descriptor: it cannot be a script anyway.
	if rfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0); err == nil {
		unix.Close(fd)
		p.fd = rfd
		buf := make([]byte, 256)
		n, _ := unix.Pread(rfd, buf, 0)
		if n > 0 {
			p.head = buf[:n]
		}
		p.script = len(p.head) >= 2 && p.head[0] == '#' && p.head[1] == '!'
	}
	return p, nil
}

// checkFile applies the checks on the program file itself, in the order of
// DESIGN.md: regular, executable, not setuid/setgid, not writable by group
// or others, owner.
func checkFile(path string, st *unix.Stat_t, id identity.Identity, mode string) error {
	m := st.Mode
	switch {
	case m&unix.S_IFMT != unix.S_IFREG:
		return refuse(NotRegular, path, "not a regular file (%s)", fileType(m))
	case !executableBy(st, id):
		return refuse(NoExecBit, path, "mode %04o, owner %d, group %d: no execute permission for uid %d", m&0o7777, st.Uid, st.Gid, id.UID)
	case m&(unix.S_ISUID|unix.S_ISGID) != 0:
		return refuse(SetID, path, "mode %04o has the setuid or setgid bit", m&0o7777)
	case m&0o022 != 0:
		return refuse(WritableFile, path, "mode %04o is writable by %s", m&0o7777, writers(m))
	}
	switch mode {
	case ModeOwner, ModeAccount:
		if st.Uid != id.UID {
			return refuse(OwnerMismatch, path, "owned by uid %d, not by uid %d (%s) as run-as mode %q requires", st.Uid, id.UID, id.Name, mode)
		}
	default:
		if st.Uid != 0 && st.Uid != id.UID {
			return refuse(OwnerMismatch, path, "owned by uid %d, neither root nor uid %d (%s)", st.Uid, id.UID, id.Name)
		}
	}
	return nil
}

// executableBy applies the permission class the kernel would: owner, then
// group, then others; the first class that matches decides.
func executableBy(st *unix.Stat_t, id identity.Identity) bool {
	if st.Uid == id.UID {
		return st.Mode&0o100 != 0
	}
	if st.Gid == id.GID {
		return st.Mode&0o010 != 0
	}
	for _, g := range id.Groups {
		if g == st.Gid {
			return st.Mode&0o010 != 0
		}
	}
	return st.Mode&0o001 != 0
}

func writers(m uint32) string {
	switch {
	case m&0o022 == 0o022:
		return "group and others"
	case m&0o020 != 0:
		return "group"
	}
	return "others"
}

func fileType(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	}
	return "unknown type"
}

// walkFailure explains a failed step of the walk. ELOOP means a symlink:
// resolving the whole path again, this time following symlinks but still
// beneath the route directory, tells a symlink that leads out (EXDEV) from
// one that stays inside; both are refused.
func walkFailure(err error, root int, rel, at string) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		fd, err2 := unix.Openat2(root, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS})
		if err2 == nil {
			unix.Close(fd)
		}
		if errors.Is(err2, unix.EXDEV) {
			return &Failure{Kind: Outside, Path: at, Detail: "a symlink leads outside the route directory", Exit: -1, Err: err}
		}
		return &Failure{Kind: Symlink, Path: at, Detail: "is or goes through a symlink; programs must be named by their real path", Exit: -1, Err: err}
	case errors.Is(err, unix.ENOSYS):
		return &Failure{Kind: ExecFailed, Path: at, Detail: "openat2 is not available: suserve needs Linux 5.6 or later", Exit: -1, Err: err}
	}
	return openFailure(err, at, "")
}

func openFailure(err error, path, what string) error {
	f := &Failure{Kind: ExecFailed, Path: path, Exit: -1, Err: err}
	switch {
	case errors.Is(err, unix.ENOENT):
		f.Kind, f.Detail = NotFound, "no such file or directory"
	case errors.Is(err, unix.ENOTDIR):
		f.Kind, f.Detail = NotFound, "a component of the path is not a directory"
	case errors.Is(err, unix.EACCES):
		f.Kind, f.Detail = PermissionDenied, "the server may not search a directory on the path"
	default:
		f.Detail = err.Error()
	}
	if what != "" {
		f.Detail = what + ": " + f.Detail
	}
	return f
}

// checkIdentity applies the uid/gid policy to an identity the program is
// about to be switched to. The identity source applies it too; doing it
// again here, right before the exec, keeps root out whatever source the
// server was given.
func checkIdentity(id identity.Identity, uidMin, gidMin uint32) error {
	name := fmt.Sprintf("%s (uid %d, gid %d)", id.Name, id.UID, id.GID)
	switch {
	case id.UID == 0:
		return refuse(RootIdentity, "", "identity %s: uid 0 (root) is never allowed", name)
	case id.GID == 0:
		return refuse(RootIdentity, "", "identity %s: gid 0 (root's group) is never allowed", name)
	}
	for _, g := range id.Groups {
		if g == 0 {
			return refuse(RootIdentity, "", "identity %s: member of group 0 (root's group), which is never allowed", name)
		}
	}
	switch {
	case id.UID < uidMin:
		return refuse(BelowMinimum, "", "identity %s: uid below uid_min %d", name, uidMin)
	case id.GID < gidMin:
		return refuse(BelowMinimum, "", "identity %s: gid below gid_min %d", name, gidMin)
	}
	return nil
}
