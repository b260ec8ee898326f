// Command probe is the fixture program of spawn's tests: it reports what a
// started program sees (identity, descriptors, umask, working directory,
// environment) and ends in the ways the tests diagnose.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(0)
	}
	switch os.Args[1] {
	case "id":
		gs, _ := syscall.Getgroups()
		sort.Ints(gs)
		fmt.Printf("%d %d %v\n", os.Getuid(), os.Getgid(), gs)
	case "fds":
		d, err := os.Open("/proc/self/fd")
		if err != nil {
			fail(err)
		}
		names, err := d.Readdirnames(-1)
		if err != nil {
			fail(err)
		}
		// The descriptors the program was started with are those without
		// close-on-exec: the Go runtime opens its own (the poller, the
		// cgroup CPU quota files) with it.
		var fds []int
		for _, n := range names {
			i, _ := strconv.Atoi(n)
			fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(i), syscall.F_GETFD, 0)
			if errno == 0 && fl&syscall.FD_CLOEXEC == 0 {
				fds = append(fds, i)
			}
		}
		sort.Ints(fds)
		fmt.Println(fds)
	case "umask":
		f, err := os.Open("/proc/self/status")
		if err != nil {
			fail(err)
		}
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "Umask:"); ok {
				fmt.Println(strings.TrimSpace(v))
			}
		}
	case "cwd":
		wd, err := os.Getwd()
		if err != nil {
			fail(err)
		}
		fmt.Println(wd)
	case "env":
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		os.Exit(n)
	case "signal":
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(time.Hour)
	case "sleep":
		time.Sleep(time.Hour)
	case "trap":
		// Says "trapping" once SIGTERM is caught, and exits 0 on it: a
		// stopped process cannot.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("trapping")
		<-c
		os.Exit(0)
	case "close":
		// Closes its output and goes on running.
		syscall.Close(1)
		time.Sleep(time.Hour)
	case "bg":
		// A background child in the same process group; then either wait
		// ("bg stay") or exit at once ("bg exit").
		p, err := os.StartProcess("/proc/self/exe", []string{"probe", "sleep"}, &os.ProcAttr{})
		if err != nil {
			fail(err)
		}
		fmt.Println(p.Pid)
		if len(os.Args) > 2 && os.Args[2] == "exit" {
			os.Exit(0)
		}
		time.Sleep(time.Hour)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
