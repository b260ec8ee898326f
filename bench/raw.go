package main

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ownCPU is the CPU time this process has used so far, user and system,
// all threads; children not included.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the CPU time all cores spent outside idle and iowait so far,
// from the first line of /proc/stat.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	const userHZ = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(busy) * time.Second / userHZ
}

// rawSpawn is the physical limit: fork/exec and reap the program in a loop,
// one worker per core, with no HTTP and no pipes but stdout to /dev/null.
func rawSpawn(prog string, cred *syscall.Credential, d time.Duration) (loadResult, error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return loadResult{}, err
	}
	defer devnull.Close()
	fd := devnull.Fd()
	attr := &syscall.ProcAttr{
		Env:   []string{"PATH=/usr/bin:/bin"},
		Files: []uintptr{fd, fd, fd},
		Sys:   &syscall.SysProcAttr{Credential: cred},
	}
	return spawnLoop(d, func() error {
		pid, err := syscall.ForkExec(prog, []string{prog}, attr)
		if err != nil {
			return err
		}
		var ws syscall.WaitStatus
		for {
			if _, err = syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
				return err
			}
		}
	})
}

// osExec is the same loop through os/exec, which adds pipes and goroutines:
// shown beside the raw limit for reference.
func osExec(prog string, d time.Duration) (loadResult, error) {
	return spawnLoop(d, func() error {
		cmd := exec.Command(prog)
		var out bytes.Buffer
		cmd.Stdout = &out
		return cmd.Run()
	})
}

func spawnLoop(d time.Duration, spawn func() error) (loadResult, error) {
	workers := runtime.NumCPU()
	lats := make([][]time.Duration, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	cpu0 := machineCPU()
	start := time.Now()
	deadline := start.Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := spawn(); err != nil {
					errs[w] = err
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	res := loadResult{elapsed: time.Since(start), cpu: machineCPU() - cpu0}
	for w := range workers {
		if errs[w] != nil {
			return res, errs[w]
		}
		res.lat = append(res.lat, lats[w]...)
	}
	res.requests = len(res.lat)
	slices.Sort(res.lat)
	return res, nil
}

// buildHello compiles hello.c statically into dir, or, without a C
// compiler, an equivalent Go program.
func buildHello(dir string) (string, error) {
	out := dir + "/hello"
	if cc, err := exec.LookPath("gcc"); err == nil {
		cmd := exec.Command(cc, "-O2", "-static", "-o", out, "bench/testdata/hello.c")
		if b, err := cmd.CombinedOutput(); err == nil {
			return out, nil
		} else {
			os.Stderr.Write(b)
		}
	}
	src := dir + "/hello.go"
	prog := "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"Content-Type: text/plain\\r\\n\\r\\nhello\\n\") }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", out, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{out: string(b), err: err}
	}
	return out, nil
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string {
	return "building the hello program: " + e.err.Error() + "\n" + e.out
}
