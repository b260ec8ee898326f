package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/suserve/suserve/internal/auth"
)

// passwd sets or deletes a user's line in an htpasswd file. The password is
// read from the terminal without echo, or from standard input (one line)
// when that is not a terminal.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "htpasswd file to create or update (required)")
	del := fs.Bool("delete", false, "remove the user instead of setting a password")
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: suserve passwd -file FILE [-delete] [-cost N] USER")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	user := fs.Arg(0)
	if *del {
		if err := auth.DeleteUser(*file, user); err != nil {
			fmt.Fprintf(stderr, "suserve passwd: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: removed %s\n", *file, user)
		return 0
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "suserve passwd: %v\n", err)
		return 1
	}
	defer clear(pw)
	if err := auth.SetPassword(*file, user, pw, *cost); err != nil {
		fmt.Fprintf(stderr, "suserve passwd: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: password of %s set (bcrypt, cost %d)\n", *file, user, *cost)
	return 0
}

// readPassword reads a password: twice without echo from a terminal, or
// one line from anything else (a pipe, for scripts).
func readPassword(stdin io.Reader, prompt io.Writer) ([]byte, error) {
	f, ok := stdin.(*os.File)
	if ok {
		if old, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			noecho := *old
			noecho.Lflag &^= unix.ECHO
			noecho.Lflag |= unix.ICANON | unix.ECHONL
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &noecho); err != nil {
				return nil, fmt.Errorf("turning off echo: %w", err)
			}
			defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, old)
			r := bufio.NewReader(f)
			fmt.Fprint(prompt, "Password: ")
			a, err := readLine(r)
			if err != nil {
				return nil, err
			}
			fmt.Fprint(prompt, "Again: ")
			b, err := readLine(r)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(a, b) {
				return nil, errors.New("the two passwords differ")
			}
			clear(b)
			return a, nil
		}
	}
	return readLine(bufio.NewReader(stdin))
}

func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no password on standard input")
		}
		return nil, err
	}
	line = bytes.TrimRight(line, "\r\n")
	if len(line) == 0 {
		return nil, errors.New("empty password")
	}
	return line, nil
}
