package cgi

import (
	"os"

	"golang.org/x/sys/unix"
)

// childPipe makes a pipe with one end for a program's standard stream: the
// read end when childReads (its stdin), else the write end. The program's
// end stays blocking, as programs expect of their stdio, and out of the
// runtime's poller: the gateway only hands it on and closes it. The
// gateway's end is non-blocking in the poller, so that reading or writing
// it parks no thread and deadlines work. os.Pipe would put both ends in the
// poller, the launcher would switch the program's end back to blocking, and
// closing it would take it out of the poller again: ten system calls a pipe
// where this makes five, and each is costly on a virtual machine.
func childPipe(childReads bool) (gateway, child *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	g, c := p[0], p[1]
	if childReads {
		g, c = p[1], p[0]
	}
	// A new pipe's end has no other status flag for F_SETFL to keep.
	if _, err := unix.FcntlInt(uintptr(g), unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(g), "|gateway"), os.NewFile(uintptr(c), "|program"), nil
}
