package identity

import (
	"log/slog"
	"testing"
)

// BenchmarkLookup measures a lookup of a cached name. The "map" case is the
// floor: a plain map read from a table of the same size, with no check for
// changed files and no copy of the groups. The static table holds the same
// identities too (Go's maps scan tables of up to eight entries without
// hashing, so a smaller table would flatter it).
func BenchmarkLookup(b *testing.B) {
	sys := &System{PasswdPath: "testdata/passwd", GroupPath: "testdata/group", Logger: slog.New(slog.DiscardHandler)}
	if _, err := sys.Lookup("alice"); err != nil {
		b.Fatal(err)
	}
	var all []Identity
	floor := map[string]Identity{}
	for _, id := range sys.cur.Load().byName {
		all = append(all, id)
		floor[id.Name] = id
	}
	st, err := NewStatic(all)
	if err != nil {
		b.Fatal(err)
	}
	checked := Checked{Source: sys, Policy: Policy{UIDMin: 1000, GIDMin: 1000}}

	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := floor["alice"]; !ok {
				b.Fatal("missing")
			}
		}
	})
	for _, c := range []struct {
		name string
		src  Source
	}{{"system", sys}, {"static", st}, {"checked-system", checked}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.src.Lookup("alice"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.src.Lookup("alice"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
