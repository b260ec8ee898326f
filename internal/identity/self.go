package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Self returns the identity of the running process, for when suserve runs as
// an ordinary user and every program runs as that user. The uid, gid and
// groups are the kernel's (getgroups(2)); the name and home come from sys when
// it is non-nil and has an account with that uid. Without one, the name is the
// decimal uid and the home is $HOME if that is absolute.
//
// Self applies no Policy: as root it returns uid 0, and callers that would
// run programs as Self's identity while root must not.
func Self(sys *System) (Identity, error) {
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	gs, err := os.Getgroups()
	if err != nil {
		return Identity{}, fmt.Errorf("identity: getgroups: %w", err)
	}
	groups := make([]uint32, 0, len(gs))
	for _, g := range gs {
		groups = append(groups, uint32(g))
	}
	id := Identity{Name: strconv.FormatUint(uint64(uid), 10), UID: uid, GID: gid, Groups: sortedIDs(groups)}
	if len(id.Groups) == 0 {
		id.Groups = nil
	}
	if h := os.Getenv("HOME"); filepath.IsAbs(h) {
		id.Home = filepath.Clean(h)
	}
	if sys == nil {
		return id, nil
	}
	acct, err := sys.LookupUID(uid)
	switch {
	case err == nil:
		id.Name, id.Home = acct.Name, acct.Home
	case errors.Is(err, ErrUnknown):
		// A uid without an account (common in containers) is still a uid.
	default:
		return Identity{}, err
	}
	return id, nil
}
