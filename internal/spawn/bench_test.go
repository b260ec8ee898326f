package spawn

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/suserve/suserve/internal/testutil"
)

// tinyELF is a static x86-64 program of 128 bytes that exits 0 at once:
// the cheapest exec there is, so that the benchmarks measure spawning.
func tinyELF() []byte {
	const base, hdr = 0x400000, 64 + 56
	code := []byte{0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05} // mov eax,60; xor edi,edi; syscall
	b := make([]byte, hdr, hdr+len(code))
	copy(b, "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], base+hdr) // entry
	le.PutUint64(b[32:], 64)       // program headers
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	ph := b[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], uint64(hdr+len(code)))
	le.PutUint64(ph[40:], uint64(hdr+len(code)))
	le.PutUint64(ph[48:], 0x1000)
	return append(b, code...)
}

// benchProgram writes the tiny program (or, off x86-64, the probe) into a
// route directory and returns the fixture and its path.
func benchProgram(b *testing.B) (*Local, *Spec) {
	dir, err := os.MkdirTemp(base, "bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	content := tinyELF()
	if runtime.GOARCH != "amd64" {
		if content, err = os.ReadFile(probePath); err != nil {
			b.Fatal(err)
		}
	}
	p := filepath.Join(dir, "true")
	if err := os.WriteFile(p, content, 0o755); err != nil {
		b.Fatal(err)
	}
	s := &Spec{Path: p, Args: []string{"true"}, RouteDir: dir}
	if os.Geteuid() == 0 {
		s.Identity = "alice"
	}
	return &Local{Identities: testIDs}, s
}

func rawCredential() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.Credential{Uid: testutil.AliceUID, Gid: testutil.AliceUID, Groups: []uint32{testutil.AliceUID, groupUID}}
}

func spawnRaw(b *testing.B, path string, n int) time.Duration {
	null := devNull(b)
	attr := &syscall.ProcAttr{Files: []uintptr{null.Fd(), null.Fd(), null.Fd()}, Sys: &syscall.SysProcAttr{Credential: rawCredential()}}
	start := time.Now()
	for range n {
		pid, err := syscall.ForkExec(path, []string{"true"}, attr)
		if err != nil {
			b.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			b.Fatal(err, ws)
		}
	}
	return time.Since(start)
}

// BenchmarkSpawnRaw is the limit: syscall.ForkExec and Wait4 of the tiny
// program, with the same credential switch as the launcher when root.
func BenchmarkSpawnRaw(b *testing.B) {
	_, s := benchProgram(b)
	b.ResetTimer()
	spawnRaw(b, s.Path, b.N)
}

// BenchmarkLocalStart is the launcher on the same program: identity
// resolution, the policy walk, the exec of the checked descriptor, the
// pidfd wait and the reap. It reports the raw spawn's time per op, measured
// in the same run, and the launcher's ratio to it.
func BenchmarkLocalStart(b *testing.B) {
	l, s := benchProgram(b)
	raw := spawnRaw(b, s.Path, b.N)
	b.ResetTimer()
	for range b.N {
		p, err := l.Start(context.Background(), s)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		p.Kill()
	}
	b.StopTimer()
	per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	rawPer := float64(raw.Nanoseconds()) / float64(b.N)
	b.ReportMetric(rawPer, "raw-ns/op")
	b.ReportMetric(rawPer/per, "raw-rate-ratio")
}
