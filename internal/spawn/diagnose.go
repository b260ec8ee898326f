package spawn

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/identity"
)

// shebang is a script's #! line as the kernel reads it (fs/binfmt_script.c):
// the first line of at most the first 256 bytes, "#!", optional blanks, the
// interpreter up to the next blank, and the rest of the line, trimmed of
// blanks, as one optional argument. A carriage return is not a blank to the
// kernel: in a file with Windows line endings it stays at the end of the
// interpreter or of the argument.
type shebang struct {
	Line   string // the line without its "\n"
	Interp string
	Arg    string
}

// parseShebang parses head, the first bytes of a file; ok is false when
// they do not start with "#!".
func parseShebang(head []byte) (sb shebang, ok bool) {
	if !bytes.HasPrefix(head, []byte("#!")) {
		return shebang{}, false
	}
	line := head
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	sb.Line = string(line)
	rest := bytes.TrimRight(line[2:], " \t")
	rest = bytes.TrimLeft(rest, " \t")
	i := bytes.IndexAny(rest, " \t")
	if i < 0 {
		sb.Interp = string(rest)
		return sb, true
	}
	sb.Interp = string(rest[:i])
	sb.Arg = string(bytes.TrimLeft(rest[i:], " \t"))
	return sb, true
}

// endsInCR reports whether the #! line has Windows line endings.
func (sb shebang) endsInCR() bool { return strings.HasSuffix(sb.Line, "\r") }

// quoted shows the line as the operator would type it, with the carriage
// return and other control bytes escaped ("#!/bin/sh\r").
func (sb shebang) quoted() string {
	q := strconv.Quote(sb.Line)
	return q[1 : len(q)-1]
}

// crFailure is the diagnosis of a #! line that ends in a carriage return.
// It is made before the exec: the kernel would look for an interpreter
// whose name ends in "\r" (failing with "no such file", which misleads), or
// pass an argument ending in "\r" to a real interpreter that then fails in
// its own words.
func crFailure(path string, sb shebang) *Failure {
	what := "the interpreter path ends in a carriage return"
	if sb.Arg != "" {
		what = "the #! line's argument ends in a carriage return"
	}
	return &Failure{Kind: InterpreterCR, Path: path, Exit: -1,
		Detail: fmt.Sprintf("line 1: %s — %s (the file has Windows line endings)", sb.quoted(), what)}
}

// diagnoseExec explains why exec of the checked program p failed with err,
// from facts that can still be read: the #! line, the file's mount, its
// ELF interpreter, the interpreter's existence and mode.
func diagnoseExec(err error, p *program, id identity.Identity, dir string) *Failure {
	uid := id.UID
	f := &Failure{Kind: ExecFailed, Path: p.path, Exit: -1, Err: err}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		f.Detail = err.Error()
		return f
	}
	sb, script := parseShebang(p.head)
	switch errno {
	case unix.ENOENT:
		switch {
		case script && sb.endsInCR():
			return crFailure(p.path, sb)
		case script:
			f.Kind = BadInterpreter
			f.Detail = fmt.Sprintf("line 1: %s — %s", sb.quoted(), interpProblem(sb.Interp))
		case elfInterp(p) != "":
			in := elfInterp(p)
			f.Kind = BadInterpreter
			f.Detail = fmt.Sprintf("the program's ELF interpreter (dynamic loader) %s %s", in, missingOr(in))
		default:
			f.Kind = BadDir
			f.Detail = fmt.Sprintf("working directory %s: no such file or directory", dir)
		}
	case unix.EACCES, unix.EPERM:
		var sfs unix.Statfs_t
		switch {
		case unix.Fstatfs(p.fd, &sfs) == nil && sfs.Flags&unix.ST_NOEXEC != 0:
			f.Kind = NoExecMount
			f.Detail = "the file lies on a filesystem mounted noexec"
		case !executableBy(&p.st, id):
			f.Kind = NotExecutable
			f.Detail = fmt.Sprintf("mode %04o: no execute permission for uid %d", p.st.Mode&0o7777, uid)
		case script && interpProblem(sb.Interp) != "":
			f.Kind = BadInterpreter
			f.Detail = fmt.Sprintf("line 1: %s — %s", sb.quoted(), interpProblem(sb.Interp))
		default:
			f.Kind = PermissionDenied
			f.Detail = fmt.Sprintf("permission denied for uid %d (is the working directory %s searchable by it?)", uid, dir)
		}
	case unix.ENOEXEC:
		f.Kind = ExecFormat
		if script {
			f.Detail = fmt.Sprintf("line 1: %s — the #! line names no interpreter the kernel can run", sb.quoted())
		} else {
			f.Detail = fmt.Sprintf("no #! line and not a binary this kernel runs (first bytes %s)", firstBytes(p.head))
		}
	case unix.ELOOP:
		f.Kind = BadInterpreter
		f.Detail = "too many levels of #! interpreters"
	case unix.ENOTDIR:
		f.Kind = BadDir
		f.Detail = fmt.Sprintf("working directory %s: not a directory", dir)
	case unix.E2BIG:
		f.Detail = "argument list and environment too long"
	case unix.ETXTBSY:
		f.Detail = "the file is open for writing (text file busy)"
	default:
		f.Detail = errno.Error()
	}
	return f
}

// interpProblem says what is wrong with a #! interpreter, or "" when
// nothing visible is.
func interpProblem(interp string) string {
	if interp == "" {
		return "the #! line names no interpreter"
	}
	var st unix.Stat_t
	if err := unix.Stat(interp, &st); err != nil {
		return fmt.Sprintf("the interpreter %s does not exist", interp)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Sprintf("the interpreter %s is not a regular file", interp)
	}
	if st.Mode&0o111 == 0 {
		return fmt.Sprintf("the interpreter %s is not executable (mode %04o)", interp, st.Mode&0o7777)
	}
	var sfs unix.Statfs_t
	if unix.Statfs(interp, &sfs) == nil && sfs.Flags&unix.ST_NOEXEC != 0 {
		return fmt.Sprintf("the interpreter %s lies on a filesystem mounted noexec", interp)
	}
	f, err := os.Open(interp)
	if err != nil {
		return fmt.Sprintf("the interpreter %s exists but could not be executed", interp)
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	if sb, ok := parseShebang(head[:n]); ok {
		if p := interpProblem2(sb.Interp); p != "" {
			return fmt.Sprintf("the interpreter %s is a script whose own #! line is broken: %s", interp, p)
		}
	}
	if in := elfInterpOf(f); in != "" {
		if _, err := os.Stat(in); err != nil {
			return fmt.Sprintf("the interpreter %s needs the dynamic loader %s, which does not exist", interp, in)
		}
	}
	return fmt.Sprintf("the interpreter %s exists but could not be executed", interp)
}

// interpProblem2 is interpProblem for an interpreter's own interpreter,
// without recursing further.
func interpProblem2(interp string) string {
	if _, err := os.Stat(interp); err != nil {
		return fmt.Sprintf("%s does not exist", interp)
	}
	return ""
}

func missingOr(path string) string {
	if _, err := os.Stat(path); err != nil {
		return "does not exist"
	}
	return "could not be executed"
}

// elfInterp is the PT_INTERP of an ELF program, or "".
func elfInterp(p *program) string {
	if !bytes.HasPrefix(p.head, []byte(elf.ELFMAG)) {
		return ""
	}
	fd, err := unix.FcntlInt(uintptr(p.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), p.path)
	defer f.Close()
	return elfInterpOf(f)
}

func elfInterpOf(r io.ReaderAt) string {
	ef, err := elf.NewFile(r)
	if err != nil {
		return ""
	}
	for _, pr := range ef.Progs {
		if pr.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(pr.Open(), 4096))
		if err != nil {
			return ""
		}
		return string(bytes.TrimRight(b, "\x00"))
	}
	return ""
}

func firstBytes(head []byte) string {
	if len(head) > 16 {
		head = head[:16]
	}
	if len(head) == 0 {
		return "none: the file is empty"
	}
	return strconv.Quote(string(head))
}
