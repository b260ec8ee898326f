package cell

import (
	"path/filepath"
	"strings"
	"testing"
)

const hybridMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const hybridProcCgroup = `9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/20c2
1:cpu,cpuacct:/
0::/
`

func TestDiscoveryFindsOwnCgroupInEachHierarchy(t *testing.T) {
	tests := []struct {
		name      string
		mountinfo string
		cgroup    string
		wantV1    map[string]string
		wantV2    string
	}{
		{
			name: "hybrid, memory not at the root", mountinfo: hybridMountinfo, cgroup: hybridProcCgroup,
			wantV1: map[string]string{"cpu": "/sys/fs/cgroup/cpu", "memory": "/sys/fs/cgroup/memory/process_api/20c2",
				"freezer": "/sys/fs/cgroup/freezer", "pids": "/sys/fs/cgroup/pids"},
			wantV2: "/sys/fs/cgroup/unified",
		},
		{
			name:      "pure v2 under a systemd service",
			mountinfo: "25 21 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
			cgroup:    "0::/system.slice/suserve.service\n",
			wantV1:    map[string]string{}, wantV2: "/sys/fs/cgroup/system.slice/suserve.service",
		},
		{
			name:      "v2 mount of a subtree (cgroup namespace)",
			mountinfo: "25 21 0:22 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			cgroup:    "0::/ctr/app\n",
			wantV1:    map[string]string{}, wantV2: "/sys/fs/cgroup/app",
		},
		{
			name:      "escaped mount point",
			mountinfo: `25 21 0:22 / /sys/fs/my\040cg rw - cgroup2 cgroup2 rw` + "\n",
			cgroup:    "0::/\n",
			wantV1:    map[string]string{}, wantV2: "/sys/fs/my cg",
		},
		{
			name: "no cgroups", mountinfo: "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", cgroup: "",
			wantV1: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := discoverFrom(parseMountinfo([]byte(tt.mountinfo)), parseProcCgroup([]byte(tt.cgroup)))
			if h.V2Dir != tt.wantV2 {
				t.Errorf("v2 dir %q, want %q", h.V2Dir, tt.wantV2)
			}
			if len(h.V1) != len(tt.wantV1) {
				t.Errorf("v1 %v, want %v", h.V1, tt.wantV1)
			}
			for c, d := range tt.wantV1 {
				if h.V1[c] != d {
					t.Errorf("v1 %s = %q, want %q", c, h.V1[c], d)
				}
			}
		})
	}
}

func TestCellNameIsSafeAndUnique(t *testing.T) {
	tests := []struct{ id, want string }{
		{"alice", "alice~1"},
		{"a.b-c_d", "a.b-c_d~1"},
		{"../etc", "%2e.%2fetc~1"},
		{"x/y", "x%2fy~1"},
		{"cgroup.procs", "cgroup.procs~1"},
		{"we~ird", "we%7eird~1"},
	}
	for _, tt := range tests {
		if got := cellName(tt.id, 1); got != tt.want {
			t.Errorf("cellName(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
	long := cellName(strings.Repeat("x", 300), 7)
	if len(long) > 140 || strings.ContainsRune(long, '/') {
		t.Errorf("long name %q (%d bytes)", long, len(long))
	}
}

func TestCapacityTable(t *testing.T) {
	tests := []struct {
		name               string
		host, budget, cell int64
		want, wantNot      []string
	}{
		{
			name: "default on a 24GiB host", host: 24 << 30, budget: 4 << 30, cell: 256 << 20,
			want:    []string{"budget 4GiB / cell_memory 256MiB = 16 cells", "* 256MiB", "1GiB", "4", "budget is 17% of it"},
			wantNot: []string{"WARNING"},
		},
		{
			name: "budget beyond the host", host: 2 << 30, budget: 4 << 30, cell: 256 << 20,
			want: []string{"WARNING: budget 4GiB exceeds host memory 2.0GiB"},
		},
		{
			name: "odd cell size is marked in its own row", host: 0, budget: 1 << 30, cell: 300 << 20,
			want:    []string{"= 3 cells", "(124MiB of the budget unused)", "* 300MiB"},
			wantNot: []string{"host memory"},
		},
		{
			name: "zero cell size", budget: 1 << 30, cell: 0,
			want: []string{"both must be positive"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Capacity(tt.host, tt.budget, tt.cell)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("unexpected %q in\n%s", w, got)
				}
			}
		})
	}
}

func TestHostMemoryParse(t *testing.T) {
	n, err := parseMemTotal([]byte("MemTotal:       24684052 kB\nMemFree: 1 kB\n"))
	if err != nil || n != 24684052*1024 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := parseMemTotal([]byte("MemFree: 1 kB\n")); err == nil {
		t.Fatal("no MemTotal accepted")
	}
	if n, err := HostMemory(); err != nil || n <= 0 {
		t.Fatalf("this host: %d %v", n, err)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 256 << 20: "256MiB", 4 << 30: "4GiB", 1536 << 10: "1536KiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzMountinfo(f *testing.F) {
	f.Add([]byte(hybridMountinfo), []byte(hybridProcCgroup))
	f.Add([]byte("25 21 0:22 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), []byte("0::/ctr/../x\n"))
	f.Add([]byte(`1 2 3 \ \134 - cgroup cgroup rw,memory`), []byte("4:memory:"))
	f.Fuzz(func(t *testing.T, mi, cg []byte) {
		mounts := parseMountinfo(mi)
		h := discoverFrom(mounts, parseProcCgroup(cg))
		inside := func(d string) bool {
			for _, m := range mounts {
				p := filepath.Clean(m.Point)
				if d == p || strings.HasPrefix(d, strings.TrimSuffix(p, "/")+"/") {
					return true
				}
			}
			return false
		}
		for _, d := range h.V1 {
			if !inside(d) {
				t.Fatalf("own cgroup %q outside every mount", d)
			}
		}
		if h.V2Dir != "" && !inside(h.V2Dir) {
			t.Fatalf("own v2 cgroup %q outside every mount", h.V2Dir)
		}
	})
}

func FuzzKeyedFile(f *testing.F) {
	f.Add([]byte("oom 0\noom_kill 3\n"), "oom_kill")
	f.Add([]byte("populated 1\nfrozen 0\n"), "populated")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		_ = keyed(b, key)
	})
}
