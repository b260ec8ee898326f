package identity

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestStaticLookup(t *testing.T) {
	st, err := NewStatic([]Identity{
		{Name: "alice", UID: 61001, GID: 61001, Groups: []uint32{61003, 61002, 61003}, Home: "/srv/web/alice/"},
		{Name: "bob", UID: 61002, GID: 61002},
		{Name: "wiki", UID: 61010, GID: 61010, Groups: []uint32{}, Home: "/srv/wiki"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want Identity
	}{
		// Groups are sorted and de-duplicated, the home cleaned.
		{"alice", Identity{Name: "alice", UID: 61001, GID: 61001, Groups: []uint32{61002, 61003}, Home: "/srv/web/alice"}},
		{"bob", Identity{Name: "bob", UID: 61002, GID: 61002}},
		{"wiki", Identity{Name: "wiki", UID: 61010, GID: 61010, Home: "/srv/wiki"}},
	}
	for _, tt := range tests {
		got, err := st.Lookup(tt.name)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	for _, name := range []string{"carol", "", "Alice", "alice "} {
		_, err := st.Lookup(name)
		var unknown *UnknownError
		if !errors.As(err, &unknown) || unknown.Name != name || !errors.Is(err, ErrUnknown) {
			t.Errorf("Lookup(%q) = %v, want an *UnknownError naming it", name, err)
		}
	}
}

func TestStaticKeepsItsOwnCopyOfTheTable(t *testing.T) {
	ids := []Identity{{Name: "alice", UID: 61001, GID: 61001, Groups: []uint32{61002}}}
	st, err := NewStatic(ids)
	if err != nil {
		t.Fatal(err)
	}
	ids[0].Groups[0] = 0
	ids[0].UID = 0
	if id, _ := st.Lookup("alice"); id.UID != 61001 || id.Groups[0] != 61002 {
		t.Errorf("changing the caller's slice changed the table: %+v", id)
	}
}

func TestNewStaticRefusesEveryBadEntry(t *testing.T) {
	good := Identity{Name: "alice", UID: 61001, GID: 61001, Home: "/home/alice"}
	tests := []struct {
		name  string
		entry Identity
		says  string
	}{
		{"empty name", Identity{UID: 61001, GID: 61001}, "name is empty"},
		{"slash in name", Identity{Name: "a/b", UID: 61001, GID: 61001}, `name contains '/'`},
		{"dot-dot name", Identity{Name: "..", UID: 61001, GID: 61001}, "name is a path element"},
		{"blank in name", Identity{Name: "al ice", UID: 61001, GID: 61001}, `name contains ' '`},
		{"duplicate name", good, "used by an earlier entry"},
		{"uid -1", Identity{Name: "x", UID: noID, GID: 61001}, "setresuid(2)"},
		{"gid -1", Identity{Name: "x", UID: 61001, GID: noID}, "setresuid(2)"},
		{"group -1", Identity{Name: "x", UID: 61001, GID: 61001, Groups: []uint32{noID}}, "group 4294967295"},
		{"relative home", Identity{Name: "x", UID: 61001, GID: 61001, Home: "home/x"}, "not an absolute path"},
		{"home with a newline", Identity{Name: "x", UID: 61001, GID: 61001, Home: "/home/x\n"}, `contains '\n'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := NewStatic([]Identity{good, tt.entry})
			var ee *EntryError
			if st != nil || !errors.As(err, &ee) || ee.Index != 1 || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("NewStatic = %v, %v; want an *EntryError for entry 1 saying %q", st, err, tt.says)
			}
		})
	}

	// All refusals are reported at once.
	_, err := NewStatic([]Identity{{Name: ""}, good, {Name: "a/b"}, good})
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 3 {
		t.Fatalf("NewStatic with three bad entries = %v, want three errors", err)
	}
	for i, want := range []int{0, 2, 3} {
		var ee *EntryError
		if !errors.As(joined.Unwrap()[i], &ee) || ee.Index != want {
			t.Errorf("error %d = %v, want entry %d", i, joined.Unwrap()[i], want)
		}
	}
}

func TestStaticAcceptsRootButCheckedRefusesIt(t *testing.T) {
	// The table is data; the policy is applied at every lookup.
	st, err := NewStatic([]Identity{{Name: "root", UID: 0, GID: 0, Home: "/root"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (Checked{Source: st}).Lookup("root"); !isRefusal(err, RootUID) {
		t.Errorf("Checked Lookup(root) = %v, want a RootUID refusal", err)
	}
}

func isRefusal(err error, r Reason) bool {
	var pe *PolicyError
	return errors.As(err, &pe) && pe.Reason == r
}

func TestCheckedRefusesWhatPolicyForbids(t *testing.T) {
	st, err := NewStatic([]Identity{
		{Name: "root", UID: 0, GID: 0},
		{Name: "toor", UID: 0, GID: 61001},
		{Name: "wheel", UID: 61004, GID: 0},
		{Name: "admin", UID: 61005, GID: 61005, Groups: []uint32{27, 0}},
		{Name: "low", UID: 500, GID: 61001},
		{Name: "lowgid", UID: 61006, GID: 50},
		{Name: "alice", UID: 61001, GID: 61001, Groups: []uint32{100}},
		{Name: "edge", UID: 1000, GID: 1000},
		{Name: "daemon", UID: 1, GID: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		policy Policy
		name   string
		reason Reason // "" means allowed
		min    uint32
		says   string
	}{
		{Policy{UIDMin: 1000, GIDMin: 1000}, "root", RootUID, 0, `identity "root" (uid 0, gid 0) refused: uid 0 (root) is never allowed`},
		{Policy{UIDMin: 1000, GIDMin: 1000}, "toor", RootUID, 0, "uid 0"},
		{Policy{UIDMin: 1000, GIDMin: 1000}, "wheel", RootGID, 0, "gid 0"},
		{Policy{UIDMin: 1000, GIDMin: 1000}, "admin", RootGroup, 0, "group 0"},
		{Policy{UIDMin: 1000, GIDMin: 1000}, "low", UIDBelowMin, 1000, `identity "low" (uid 500, gid 61001) refused: uid below uid_min 1000`},
		{Policy{UIDMin: 1000, GIDMin: 1000}, "lowgid", GIDBelowMin, 1000, "gid below gid_min 1000"},
		{Policy{UIDMin: 1000, GIDMin: 1000}, "daemon", UIDBelowMin, 1000, "uid below uid_min"},
		// Supplementary groups below gid_min are kept (users, 100).
		{Policy{UIDMin: 1000, GIDMin: 1000}, "alice", "", 0, ""},
		// The minimums are inclusive.
		{Policy{UIDMin: 1000, GIDMin: 1000}, "edge", "", 0, ""},
		// The zero Policy still refuses every 0.
		{Policy{}, "root", RootUID, 0, "uid 0"},
		{Policy{}, "wheel", RootGID, 0, "gid 0"},
		{Policy{}, "admin", RootGroup, 0, "group 0"},
		{Policy{}, "daemon", "", 0, ""},
		// A minimum of 1 changes nothing for root: it is refused as root.
		{Policy{UIDMin: 1, GIDMin: 1}, "root", RootUID, 0, "uid 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Checked{Source: st, Policy: tt.policy}
			id, err := src.Lookup(tt.name)
			if tt.reason == "" {
				if err != nil || id.Name != tt.name {
					t.Fatalf("Lookup(%q) under %+v = %+v, %v; want it allowed", tt.name, tt.policy, id, err)
				}
				return
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("Lookup(%q) under %+v = %+v, %v; want a *PolicyError", tt.name, tt.policy, id, err)
			}
			want, _ := st.Lookup(tt.name)
			if pe.Reason != tt.reason || pe.Name != tt.name || pe.UID != want.UID || pe.GID != want.GID || pe.Min != tt.min {
				t.Errorf("refusal = %+v, want reason %q min %d for %+v", pe, tt.reason, tt.min, want)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("refusal says %q, want it to contain %q", err, tt.says)
			}
			if !reflect.DeepEqual(id, Identity{}) {
				t.Errorf("a refused lookup returned the identity %+v", id)
			}
			if errors.Is(err, ErrUnknown) {
				t.Errorf("a refusal is not an unknown user: %v", err)
			}
		})
	}
}

func TestCheckedPassesUnknownAndFileErrorsThrough(t *testing.T) {
	sys, _ := fixtureSystem(t)
	src := Checked{Source: sys, Policy: Policy{UIDMin: 1000, GIDMin: 1000}}
	if _, err := src.Lookup("nobody-here"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Lookup(nobody-here) = %v, want ErrUnknown", err)
	}
	if _, err := src.Lookup("root"); !isRefusal(err, RootUID) {
		t.Errorf("Lookup(root) from the fixture = %v, want a RootUID refusal", err)
	}
	if _, err := src.Lookup("admin"); !isRefusal(err, RootGroup) {
		t.Errorf("Lookup(admin), a member of group root in the fixture = %v, want a RootGroup refusal", err)
	}
	if id, err := src.Lookup("alice"); err != nil || id.UID != 61001 {
		t.Errorf("Lookup(alice) = %+v, %v", id, err)
	}

	broken := Checked{Source: &System{PasswdPath: "testdata/nonexistent", GroupPath: "testdata/group"}}
	var fe *FileError
	if _, err := broken.Lookup("alice"); !errors.As(err, &fe) {
		t.Errorf("Lookup through a System with no passwd file = %v, want a *FileError", err)
	}
}
