package cell

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlFileReadsAreWhole: a kept-open file reads whole whatever its
// size against the read buffer (512 bytes), and again from its start after
// it changed.
func TestControlFileReadsAreWhole(t *testing.T) {
	c := newControlFiles()
	dir := t.TempDir()
	defer c.forget(dir)
	for _, n := range []int{0, 1, 511, 512, 513, 1024, 5000} {
		p := filepath.Join(dir, "f")
		want := bytes.Repeat([]byte("x"), n)
		if err := os.WriteFile(p, want, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := c.read(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read %d bytes, %v", n, len(got), err)
		}
	}
	got, err := c.read(filepath.Join(dir, "missing"))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing file reads %q, %v", got, err)
	}
}
