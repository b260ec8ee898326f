package identity

import "fmt"

// Policy says which identities programs may run as. Whatever the minimums,
// uid 0 and gid 0 are refused: a program started as root, or with root's
// group, is outside every guarantee suserve makes (it could leave its cell,
// read other users' files and change the policy itself), and no web request
// needs it. The zero Policy refuses only those.
//
// The minimums apply to the uid and the primary gid, as Apache suEXEC's
// AP_UID_MIN and AP_GID_MIN do. Supplementary groups below GIDMin are kept:
// ordinary accounts belong to groups such as users (100), and the operator
// who put an account in a group granted that access already. Supplementary
// group 0 is refused, not dropped: membership of root's group is the same
// access as gid 0, and dropping it silently would turn an operator's
// configuration mistake into programs that fail with "permission denied" and
// no stated cause. An account in group 0 is an administrator's account; serve
// its programs as another identity.
type Policy struct {
	UIDMin uint32 // uid_min: lowest uid a program may run as
	GIDMin uint32 // gid_min: lowest primary gid a program may run as
}

// Reason is why a Policy refused an identity: one value per check, so the log
// and the tests can name the check.
type Reason string

// The checks of a Policy, in the order they are made.
const (
	RootUID     Reason = "uid 0 (root) is never allowed"
	RootGID     Reason = "gid 0 (root's group) is never allowed"
	RootGroup   Reason = "member of group 0 (root's group), which is never allowed"
	UIDBelowMin Reason = "uid below uid_min"
	GIDBelowMin Reason = "gid below gid_min"
)

// PolicyError is an identity that exists but that policy forbids running as.
type PolicyError struct {
	Name   string
	UID    uint32
	GID    uint32
	Reason Reason
	Min    uint32 // the minimum that was not met, for UIDBelowMin and GIDBelowMin
}

func (e *PolicyError) Error() string {
	s := fmt.Sprintf("identity %q (uid %d, gid %d) refused: %s", e.Name, e.UID, e.GID, e.Reason)
	if e.Reason == UIDBelowMin || e.Reason == GIDBelowMin {
		s += fmt.Sprintf(" %d", e.Min)
	}
	return s
}

// Check returns a *PolicyError when id may not run programs, or nil.
func (p Policy) Check(id Identity) error {
	refuse := func(r Reason, min uint32) error {
		return &PolicyError{Name: id.Name, UID: id.UID, GID: id.GID, Reason: r, Min: min}
	}
	switch {
	case id.UID == 0:
		return refuse(RootUID, 0)
	case id.GID == 0:
		return refuse(RootGID, 0)
	}
	for _, g := range id.Groups {
		if g == 0 {
			return refuse(RootGroup, 0)
		}
	}
	switch {
	case id.UID < p.UIDMin:
		return refuse(UIDBelowMin, p.UIDMin)
	case id.GID < p.GIDMin:
		return refuse(GIDBelowMin, p.GIDMin)
	}
	return nil
}

// Checked is a Source whose lookups apply a Policy: the identity the
// underlying Source returns is handed out only if the Policy allows it.
// Callers that start programs resolve names through a Checked source, never
// through System or Static directly.
type Checked struct {
	Source
	Policy
}

// Lookup resolves name through the Source and applies the Policy. A refused
// identity is not returned, only described by the *PolicyError.
func (c Checked) Lookup(name string) (Identity, error) {
	id, err := c.Source.Lookup(name)
	if err != nil {
		return Identity{}, err
	}
	if err := c.Policy.Check(id); err != nil {
		return Identity{}, err
	}
	return id, nil
}
