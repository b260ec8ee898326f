package cell

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// reportPercentiles adds p50 and p99 of ds to the benchmark's output.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds()), "p99-ns")
}

func benchBackend(b *testing.B) (Backend, string) {
	be, _, err := Detect(Auto)
	if err != nil || be.Name() == None {
		b.Skip("no cgroup backend")
	}
	return be, benchGroup(b, be)
}

// benchGroup creates a group of its own on be for b, removed after it.
func benchGroup(b *testing.B, be Backend) string {
	testSeq++
	rel := "suserve-bench-" + strconv.Itoa(testSeq)
	if err := be.Create(rel, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { destroyTree(b, be, rel) })
	return rel
}

// BenchmarkAcquireWarm is admission into an identity's existing cell: the
// lease's request group comes from the cell's pool. Release (which checks
// the group is empty and reads its counters) is outside the timing.
func BenchmarkAcquireWarm(b *testing.B) {
	be, _ := benchBackend(b)
	p := openPool(&testing.T{}, be, Config{Budget: 1024 * mib, CellMemory: 256 * mib})
	defer p.Close()
	acquireRelease(b, p, "alice")
	ds := make([]time.Duration, 0, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		l, err := p.Acquire(ctx, "alice")
		ds = append(ds, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		l.Release()
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

func acquireRelease(b *testing.B, p *Pool, id string) {
	l, err := p.Acquire(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	l.Release()
}

// BenchmarkCreateCell is a new cell with its limits (mkdir in every
// hierarchy and the limit writes); removal is outside the timing.
func BenchmarkCreateCell(b *testing.B) {
	be, root := benchBackend(b)
	lim := &Limits{Memory: 256 * mib, Pids: 64, CPUWeight: 100}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rel := root + "/c" + strconv.Itoa(i)
		t0 := time.Now()
		if err := be.Create(rel, lim); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		b.StopTimer()
		if err := be.Remove(rel); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkRequestGroupMkdir is a request group made and removed per
// request: mkdir, then (at the end) the emptiness check and rmdir.
func BenchmarkRequestGroupMkdir(b *testing.B) {
	be, root := benchBackend(b)
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rel := root + "/r" + strconv.Itoa(i)
		t0 := time.Now()
		if err := be.Create(rel, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := be.Procs(rel); err != nil {
			b.Fatal(err)
		}
		if err := be.Remove(rel); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkRequestGroupPooled is the same request group reused: the
// emptiness check and the counters read for the next request's baseline.
func BenchmarkRequestGroupPooled(b *testing.B) {
	be, root := benchBackend(b)
	rel := root + "/r0"
	if err := be.Create(rel, nil); err != nil {
		b.Fatal(err)
	}
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := be.Procs(rel); err != nil {
			b.Fatal(err)
		}
		if _, err := be.Events(rel); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkSpawnPlacement forks and reaps /bin/true placed in a group by
// each real backend, against a plain fork in the same run ("plain").
func BenchmarkSpawnPlacement(b *testing.B) {
	spawnTrue := func(attr *syscall.SysProcAttr) (int, error) {
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = attr
		err := cmd.Run()
		return 0, err
	}
	b.Run("plain", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := spawnTrue(&syscall.SysProcAttr{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, be := range realBackends(&testing.T{}) {
		b.Run(name, func(b *testing.B) {
			rel := benchGroup(b, be)
			for i := 0; i < b.N; i++ {
				if _, err := be.Spawn(rel, spawnTrue); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The placement alone: the thread's moves in and out (v1) or the
		// directory fd (v2), with no fork.
		b.Run(name+"-placement-only", func(b *testing.B) {
			rel := benchGroup(b, be)
			ds := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := be.Spawn(rel, func(*syscall.SysProcAttr) (int, error) { return 1, nil }); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t0))
			}
			reportPercentiles(b, ds)
		})
	}
}

// BenchmarkKillEmptyGroup is the Kill that ends every request whose program
// left nothing behind: the group is found empty and nothing else is done.
func BenchmarkKillEmptyGroup(b *testing.B) {
	for name, be := range realBackends(&testing.T{}) {
		b.Run(name, func(b *testing.B) {
			rel := benchGroup(b, be)
			ctx := context.Background()
			ds := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := be.Kill(ctx, rel); err != nil && !errors.Is(err, ErrNotTracked) {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(t0))
			}
			reportPercentiles(b, ds)
		})
	}
}
