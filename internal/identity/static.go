package identity

import (
	"errors"
	"fmt"
	"slices"
)

// Static resolves names from a fixed table, for hosts that map web users to
// uids without system accounts. It is immutable once made and safe for
// concurrent use.
type Static struct {
	byName map[string]Identity
}

// EntryError says why one entry of a static table was refused.
type EntryError struct {
	Index  int // position in the table, 0-based
	Name   string
	Reason string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("identity: static entry %d (%q): %s", e.Index, e.Name, e.Reason)
}

// NewStatic makes a Static from ids. Each entry needs a name that could be a
// user name, ids other than 4294967295 and an empty or absolute home; names
// must be unique. Every refused entry is reported (errors.Join of
// *EntryError). Policy (uid 0, gid 0, the minimums) is not applied here but at
// each lookup through Checked, so that a table is never trusted for having
// passed a check once; the configuration's own validation reports the same
// problems with line numbers.
func NewStatic(ids []Identity) (*Static, error) {
	s := &Static{byName: make(map[string]Identity, len(ids))}
	var errs []error
	for i, id := range ids {
		bad := func(format string, args ...any) {
			errs = append(errs, &EntryError{Index: i, Name: id.Name, Reason: fmt.Sprintf(format, args...)})
		}
		if why := checkName(id.Name); why != "" {
			bad("name %s", why)
			continue
		}
		if _, dup := s.byName[id.Name]; dup {
			bad("name is used by an earlier entry")
			continue
		}
		if id.UID == noID || id.GID == noID {
			bad("uid and gid must be below 4294967295, which setresuid(2) reads as \"unchanged\"")
			continue
		}
		if slices.Contains(id.Groups, noID) {
			bad("group 4294967295 is not a group")
			continue
		}
		home, why := checkHome(id.Home)
		if why != "" {
			bad("home %q %s", id.Home, why)
			continue
		}
		id.Home = home
		if len(id.Groups) > 0 {
			gs := sortedIDs(slices.Clone(id.Groups))
			id.Groups = gs[:len(gs):len(gs)]
		} else {
			id.Groups = nil
		}
		s.byName[id.Name] = id
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Lookup returns the identity of name from the table. It does not apply a
// Policy: wrap the Static in Checked for that.
func (s *Static) Lookup(name string) (Identity, error) {
	id, ok := s.byName[name]
	if !ok {
		return Identity{}, &UnknownError{Name: name}
	}
	id.Groups = slices.Clone(id.Groups)
	return id, nil
}
