// Command bench measures suserve against the physical limit of this machine,
// side by side in one run: the raw fork/exec/wait rate of a tiny program (one
// worker per core, no HTTP), Go's net/http/cgi serving that program, and
// suserve serving it, at 1, 4 and 32 keep-alive connections. Every HTTP row
// is printed as a ratio to the raw limit, because on a shared, noisy machine
// only ratios measured in the same run mean anything.
//
//	go run ./bench [-d 3s] [-conns 1,4,32] [-slices 4]
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	d := flag.Duration("d", 3*time.Second, "duration of each row")
	flag.IntVar(&sliceCount, "slices", 4, "measure each HTTP row, and the setuid limit next to them, in this many slices, taken in turn across the rows of a connection count, so that the rows compared with each other share the machine's drift")
	connList := flag.String("conns", "1,4,32", "connection counts for the HTTP rows")
	rowsRe := flag.String("rows", "", "measure only the HTTP and app rows whose name matches this regular expression (the limits are always measured)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (servers in this process included) to this file")
	serveConf := flag.String("serve", "", "serve this configuration file with suserve in-process and measure nothing (how the bench starts the in-process rows that run as root in their own process)")
	state := flag.String("state", "", "the state directory for -serve")
	flag.Parse()
	if *serveConf != "" {
		if err := serveFile(*serveConf, *state); err != nil {
			fmt.Fprintln(os.Stderr, "bench -serve:", err)
			os.Exit(1)
		}
		return
	}
	var err error
	if rowFilter, err = regexp.Compile(*rowsRe); err != nil {
		fmt.Fprintln(os.Stderr, "bench: -rows:", err)
		os.Exit(2)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*d, *connList); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// rowFilter selects the HTTP and app rows to measure (-rows).
var rowFilter *regexp.Regexp

type row struct {
	name  string
	conns int
	res   loadResult
	base  *loadResult
}

func run(d time.Duration, connList string) error {
	var conns []int
	for _, c := range strings.Split(connList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -conns %q", connList)
		}
		conns = append(conns, n)
	}
	dir, err := os.MkdirTemp("", "suserve-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	prog, err := buildHello(dir)
	if err != nil {
		return err
	}
	if err := os.Chmod(prog, 0o755); err != nil {
		return err
	}

	var rows []row
	raw, err := rawSpawn(prog, nil, d)
	if err != nil {
		return fmt.Errorf("raw spawn: %w", err)
	}
	rows = append(rows, row{name: "raw fork/exec+wait4 (limit)", conns: 0, res: raw})
	// The limits live outside rows: the rows compared with them keep
	// pointers, and the limits are measured again at the end.
	base := new(loadResult)
	*base = raw
	rows[0].base = base
	if r, err := osExec(prog, d); err == nil {
		rows = append(rows, row{name: "os/exec Run (reference)", res: r, base: base})
	} else {
		return fmt.Errorf("os/exec: %w", err)
	}
	su, err := setuidRows(prog, d)
	if err != nil {
		return err
	}
	rows = append(rows, su...)

	setups, err := httpRows(dir, prog)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range setups {
			s.stop()
		}
	}()
	// The machine's speed drifts within a run: each connection count is
	// measured for every setup before the next, so that the rows compared
	// with each other (in-process and privilege-separated above all) are
	// measured within one pass over the setups, not a whole run apart.
	//
	// Within a connection count the machine still drifts between the first
	// setup and the last. Each row is therefore measured in slices, taken
	// in turn across the setups (and the setuid limit), and its slices are
	// summed: a slow moment falls on every row alike.
	var measured []row
	n := max(sliceCount, 1)
	for _, c := range conns {
		// The setuid limit again, next to the rows compared with it: the
		// whole stack's ratio is also given against this measurement
		// (printPrivsep), which is minutes nearer than the run's start or
		// end.
		identity := measuresIdentityRows(setups)
		var limit loadResult
		var active []target
		for _, s := range setups {
			if rowFilter.MatchString(s.name) {
				active = append(active, s)
			}
		}
		parts := make([]loadResult, len(active))
		for range n {
			if identity {
				res, err := setuidSpawn(prog, d/time.Duration(n))
				if err != nil {
					return err
				}
				limit = limit.add(res)
			}
			for i, s := range active {
				res, err := load(s.url, c, d/time.Duration(n), s.header)
				if err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
				parts[i] = parts[i].add(res)
			}
		}
		if identity {
			groupLimits[c] = limit
			rows = append(rows, row{name: fmt.Sprintf("%s, with the %d-connection rows", setuidLimit, c), res: limit, base: setuidLimitResult})
		}
		for i, s := range active {
			b := base
			if s.base != nil {
				b = s.base(rows)
			}
			measured = append(measured, row{name: s.name, conns: c, res: parts[i], base: b})
		}
	}
	// Printed a setup at a time, as they were started.
	for _, s := range setups {
		for _, r := range measured {
			if r.name == s.name {
				rows = append(rows, r)
			}
		}
	}
	apps, err := appRows(dir, conns, d) // apps.go
	if err != nil {
		return fmt.Errorf("app rows: %w", err)
	}
	rows = append(rows, apps...)

	// The machine's load drifts during a run: the limits are measured again
	// at the end, and every ratio uses the higher of the two, so that a
	// limit measured in a slow moment does not flatter the rows.
	again, err := rawSpawn(prog, nil, d)
	if err != nil {
		return fmt.Errorf("raw spawn: %w", err)
	}
	rows = append(rows, row{name: "raw fork/exec+wait4 (limit, again at the end)", res: again, base: base})
	if again.rate() > base.rate() {
		*base = again
	}
	su, err = setuidRows(prog, d)
	if err != nil {
		return err
	}
	for _, r := range su {
		rows = append(rows, row{name: r.name + ", again at the end", res: r.res, base: r.base})
		if l := setuidLimitResult; l != nil && r.res.rate() > l.rate() {
			*l = r.res
		}
	}
	print(os.Stdout, d, rows)
	return nil
}

// target is one HTTP server under test.
type target struct {
	name   string
	url    string
	header http.Header // sent with every request
	stop   func()
	base   func(rows []row) *loadResult // the limit this row is compared with; nil = raw
}

func serve(name string, h http.Handler, path string) (target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return target{}, err
	}
	srv := &http.Server{Handler: h, ErrorLog: nil}
	go srv.Serve(ln)
	return target{name: name, url: "http://" + ln.Addr().String() + path, stop: func() { srv.Close() }}, nil
}

func httpRows(dir, prog string) ([]target, error) {
	var ts []target
	t, err := serve("net/http/cgi", &cgi.Handler{Path: prog, Root: "/cgi-bin/hello", Logger: nil}, "/cgi-bin/hello")
	if err != nil {
		return nil, err
	}
	ts = append(ts, t)
	// As root the in-process row above cannot run (programs never run as
	// root): root's rows run the program as an identity, in-process and
	// with privilege separation (privsep.go).
	rows := suserveRows
	if os.Geteuid() == 0 {
		rows = privsepRows
	}
	more, err := rows(dir, prog)
	if err != nil {
		for _, t := range ts {
			t.stop()
		}
		return nil, err
	}
	return append(ts, more...), nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func print(w io.Writer, d time.Duration, rows []row) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "row\tconns\treq/s\tp50\tp99\tCPU µs/req\tof which bench\tvs limit\terrors\t\n")
	for _, r := range rows {
		c := "-"
		if r.conns > 0 {
			c = strconv.Itoa(r.conns)
		}
		ratio := "1.00"
		if r.base != nil {
			ratio = fmt.Sprintf("%.2f", r.res.rate()/r.base.rate())
		}
		own := "-"
		if r.conns > 0 {
			own = strconv.FormatInt(r.res.perRequest(r.res.own).Microseconds(), 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%d\t%s\t%s\t%d\t\n", r.name, c, r.res.rate(),
			r.res.pct(0.50).Round(time.Microsecond), r.res.pct(0.99).Round(time.Microsecond),
			r.res.cpuPerRequest().Microseconds(), own, ratio, r.res.errors)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d cores, %s per row; CPU is the whole machine's, load generator included; \"of which bench\" is this process's\n", numCPU(), d)
	fmt.Fprintf(w, "share (the load generator and the servers that run in it; as root, suserve's rows each run in a process of their own),\n")
	fmt.Fprintf(w, "the rest is programs, workers, servers in their own processes and the machine's other work.\n")
	fmt.Fprintf(w, "Each limit is the higher of its two measurements (start and end of the run); its rows show both against it.\n")
	printPrivsep(w, rows)
}

// printPrivsep compares each privilege-separated row with the in-process
// row of the same cells backend and connection count: req/s as a ratio and
// the latency the boundary adds at the median.
func printPrivsep(w io.Writer, rows []row) {
	const ps, in = "suserve privsep, ", "suserve in-process, "
	var out []string
	for _, p := range rows {
		rest, ok := strings.CutPrefix(p.name, ps)
		if !ok {
			continue
		}
		for _, r := range rows {
			if r.name == in+rest && r.conns == p.conns && r.res.rate() > 0 {
				out = append(out, fmt.Sprintf("  %s, %d conns: req/s %.2f of in-process, p50 %+.2f ms", rest, p.conns,
					p.res.rate()/r.res.rate(), float64(p.res.pct(0.50)-r.res.pct(0.50))/float64(time.Millisecond)))
			}
		}
	}
	if len(out) > 0 {
		fmt.Fprintf(w, "\nPrivilege separation against in-process, same run:\n%s\n", strings.Join(out, "\n"))
	}
	out = out[:0]
	for _, r := range rows {
		l, ok := groupLimits[r.conns]
		if !ok || l.rate() == 0 || !(strings.HasPrefix(r.name, ps) || strings.HasPrefix(r.name, in)) {
			continue
		}
		out = append(out, fmt.Sprintf("  %s, %d conns: %.2f of %.0f req/s", r.name, r.conns, r.res.rate()/l.rate(), l.rate()))
	}
	if len(out) > 0 {
		fmt.Fprintf(w, "\nThe whole stack against the setuid limit measured with its connection count's rows\n(the column \"vs limit\" uses the higher of the limit's measurements at the start and the end):\n%s\n", strings.Join(out, "\n"))
	}
}

// sliceCount is -slices: how many turns a connection count's rows take.
var sliceCount = 4

// groupLimits are the setuid limits measured before each connection count's
// rows, by connection count.
var groupLimits = map[int]loadResult{}

func numCPU() int { return runtime.NumCPU() }
