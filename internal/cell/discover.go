package cell

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// mount is one cgroup filesystem from /proc/self/mountinfo.
type mount struct {
	Point       string   // where it is mounted
	Root        string   // the part of the hierarchy the mount shows (not "/" inside cgroup namespaces)
	V2          bool     // cgroup2
	Controllers []string // v1: the controllers of the hierarchy (super options), name=systemd excluded
}

// parseMountinfo returns the cgroup and cgroup2 mounts of a mountinfo file
// (proc(5): "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue").
// Malformed lines are skipped: the file comes from the kernel, but a parser
// that panics on surprise would take suserve down at start.
func parseMountinfo(data []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+3 {
			continue
		}
		fstype, super := fields[sep+1], fields[sep+3]
		m := mount{Root: unescapeMount(fields[3]), Point: unescapeMount(fields[4])}
		switch fstype {
		case "cgroup2":
			m.V2 = true
		case "cgroup":
			for _, o := range strings.Split(super, ",") {
				switch {
				case o == "rw" || o == "ro" || strings.HasPrefix(o, "name=") || strings.Contains(o, "="):
				case o == "noprefix" || o == "clone_children" || o == "xattr" || o == "cpuset_v2_mode" || o == "favordynmods":
				default:
					m.Controllers = append(m.Controllers, o)
				}
			}
			if len(m.Controllers) == 0 {
				continue // a named hierarchy (name=systemd) has no controllers for us
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes the octal escapes mountinfo uses for space, tab,
// newline and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			o := s[i+1 : i+4]
			if o[0] >= '0' && o[0] <= '3' && o[1] >= '0' && o[1] <= '7' && o[2] >= '0' && o[2] <= '7' {
				b.WriteByte((o[0]-'0')<<6 | (o[1]-'0')<<3 | (o[2] - '0'))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procCgroup is this process's membership: v1 controller -> path, and the
// v2 path ("" when the process has no v2 line).
type procCgroup struct {
	V1    map[string]string
	V2    string
	HasV2 bool
}

// parseProcCgroup parses /proc/self/cgroup ("hierarchy-ID:controller-list:cgroup-path",
// cgroups(7)). The v2 line has ID 0 and an empty controller list.
func parseProcCgroup(data []byte) procCgroup {
	pc := procCgroup{V1: map[string]string{}}
	for _, line := range strings.Split(string(data), "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok || !strings.HasPrefix(path, "/") {
			continue
		}
		if id == "0" && ctrls == "" {
			pc.V2, pc.HasV2 = path, true
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c != "" && !strings.HasPrefix(c, "name=") {
				pc.V1[c] = path
			}
		}
	}
	return pc
}

// ownDir is the directory of our own cgroup under a mount: the mount shows
// the hierarchy from m.Root, and our path is relative to the hierarchy (or
// to the cgroup namespace root, which is what the mount shows inside one).
func ownDir(m mount, path string) (string, bool) {
	rel := path
	if m.Root != "/" {
		switch {
		case path == m.Root:
			rel = "/"
		case strings.HasPrefix(path, m.Root+"/"):
			rel = strings.TrimPrefix(path, m.Root)
		case strings.HasPrefix(path, "/"):
			// Inside a cgroup namespace the path is already relative to
			// the namespace root, which is the mount's root.
		default:
			return "", false
		}
	}
	if strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") {
		return "", false
	}
	return filepath.Join(m.Point, rel), true
}

// host is what discovery found: this process's cgroup directory in the v2
// mount and in each v1 hierarchy, and the controllers v2 offers there.
type host struct {
	V2Dir         string            // "" when there is no usable v2 mount
	V2Controllers []string          // cgroup.controllers of V2Dir
	V1            map[string]string // controller -> our directory in its hierarchy
}

func discover() (host, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return host{}, &FileError{Op: "read", Path: "/proc/self/mountinfo", Err: err}
	}
	pcg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return host{}, &FileError{Op: "read", Path: "/proc/self/cgroup", Err: err}
	}
	h := discoverFrom(parseMountinfo(mi), parseProcCgroup(pcg))
	if h.V2Dir != "" {
		if b, err := os.ReadFile(filepath.Join(h.V2Dir, "cgroup.controllers")); err == nil {
			h.V2Controllers = strings.Fields(string(b))
		}
	}
	return h, nil
}

func discoverFrom(mounts []mount, pc procCgroup) host {
	h := host{V1: map[string]string{}}
	for _, m := range mounts {
		if m.V2 {
			if !pc.HasV2 || h.V2Dir != "" {
				continue
			}
			if d, ok := ownDir(m, pc.V2); ok {
				h.V2Dir = d
			}
			continue
		}
		for _, c := range m.Controllers {
			p, ok := pc.V1[c]
			if !ok {
				continue
			}
			if _, seen := h.V1[c]; seen {
				continue
			}
			if d, ok := ownDir(m, p); ok {
				h.V1[c] = d
			}
		}
	}
	return h
}

// Backend names accepted by Detect.
const (
	Auto    = "auto"
	Cgroup2 = "cgroup2"
	Cgroup1 = "cgroup1"
	None    = "none"
)

// Detect chooses the backend named by kind ("auto", "cgroup2", "cgroup1" or
// "none") and says why, in a sentence for `suserve check` and the start-up
// log. An explicit kind that cannot work is an *UnavailableError; "auto"
// falls back to the best that works and ends at "none" with the reason.
func Detect(kind string) (Backend, string, error) {
	if kind == None {
		return newNone(), "backend none chosen in the configuration: no limits, no whole-tree kill", nil
	}
	h, err := discover()
	if err != nil {
		return nil, "", err
	}
	return detectFrom(kind, h, os.Geteuid() == 0)
}

func detectFrom(kind string, h host, root bool) (Backend, string, error) {
	v2why, v2ok, v2limits := judgeV2(h, root)
	v1why, v1ok := judgeV1(h, root)
	switch kind {
	case Cgroup2:
		if !v2ok {
			return nil, "", &UnavailableError{Backend: Cgroup2, Reason: v2why}
		}
		return newV2(h.V2Dir, h.V2Controllers), v2why, nil
	case Cgroup1:
		if !v1ok {
			return nil, "", &UnavailableError{Backend: Cgroup1, Reason: v1why}
		}
		return newV1(h.V1), v1why, nil
	case Auto, "":
		switch {
		case v2ok && v2limits:
			return newV2(h.V2Dir, h.V2Controllers), v2why, nil
		case v1ok:
			return newV1(h.V1), v2why + "; " + v1why, nil
		case v2ok:
			return newV2(h.V2Dir, h.V2Controllers), v2why + "; " + v1why + "; using cgroup2 for membership and kill only", nil
		default:
			return newNone(), v2why + "; " + v1why + "; falling back to none: LIMITS ARE OFF", nil
		}
	}
	return nil, "", &UnavailableError{Backend: kind, Reason: `unknown backend (want "auto", "cgroup2", "cgroup1" or "none")`}
}

// v2Wanted are the controllers a v2 cell needs for its limits.
var v2Wanted = []string{"memory", "pids", "cpu"}

func judgeV2(h host, root bool) (why string, usable, limits bool) {
	if h.V2Dir == "" {
		return "no cgroup2 mount holds this process", false, false
	}
	if !writable(h.V2Dir, root) {
		return fmt.Sprintf("cgroup2 at %s is not writable by this process", h.V2Dir), false, false
	}
	var missing []string
	for _, c := range v2Wanted {
		if !contains(h.V2Controllers, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) == len(v2Wanted) {
		return fmt.Sprintf("cgroup2 at %s has no controllers: limits unavailable", h.V2Dir), true, false
	}
	if len(missing) > 0 {
		return fmt.Sprintf("cgroup2 at %s lacks %s: those limits unavailable", h.V2Dir, strings.Join(missing, ", ")), true, contains(h.V2Controllers, "memory")
	}
	return fmt.Sprintf("cgroup2 at %s with memory, pids, cpu", h.V2Dir), true, true
}

// v1Required are the hierarchies a v1 cell cannot do without: memory and
// pids for the limits, freezer for a whole-tree kill that a fork bomb
// cannot outrun. cpu is used when present.
var v1Required = []string{"memory", "pids", "freezer"}

func judgeV1(h host, root bool) (string, bool) {
	var missing []string
	for _, c := range v1Required {
		if _, ok := h.V1[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) == len(v1Required) {
		return "no cgroup1 hierarchies", false
	}
	if len(missing) > 0 {
		return "cgroup1 lacks the " + strings.Join(missing, ", ") + " hierarchy", false
	}
	var names []string
	for c := range h.V1 {
		if c == "memory" || c == "pids" || c == "freezer" || c == "cpu" {
			names = append(names, c)
		}
	}
	sort.Strings(names)
	for _, c := range names {
		if !writable(h.V1[c], root) {
			return fmt.Sprintf("cgroup1 %s at %s is not writable by this process", c, h.V1[c]), false
		}
	}
	return fmt.Sprintf("cgroup1 %s (memory under %s)", strings.Join(names, ", "), h.V1["memory"]), true
}

func writable(dir string, root bool) bool {
	if !root {
		return unix.Access(dir, unix.W_OK) == nil
	}
	_, err := os.Stat(dir)
	return err == nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
