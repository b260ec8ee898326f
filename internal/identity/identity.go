// Package identity resolves the Unix identities programs run as: a user name
// becomes a uid, a primary gid, supplementary groups and a home directory,
// from the system's accounts or from a static table in the configuration, and
// the uid/gid policy (never 0, never below the configured minimum) is applied
// on every lookup.
package identity

import (
	"errors"
	"fmt"
)

// Identity is one Unix identity a program can run as.
type Identity struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, not including GID unless listed
	Home   string
}

// Source resolves user names to identities.
type Source interface {
	// Lookup returns the identity of name, or an error wrapping ErrUnknown
	// when there is none, or a *PolicyError when the identity exists but
	// policy forbids running as it.
	Lookup(name string) (Identity, error)
}

// ErrUnknown is the cause of every lookup of a name (or uid) that no account
// has. Lookups return it wrapped in an *UnknownError that carries the name.
var ErrUnknown = errors.New("unknown user")

// UnknownError says which name (or uid) a lookup did not find. It unwraps to
// ErrUnknown, so errors.Is(err, ErrUnknown) holds.
type UnknownError struct {
	Name  string // the name looked up; empty when ByUID
	UID   uint32 // the uid looked up, when ByUID
	ByUID bool
}

func (e *UnknownError) Error() string {
	if e.ByUID {
		return fmt.Sprintf("identity: no user has uid %d", e.UID)
	}
	return fmt.Sprintf("identity: unknown user %q", e.Name)
}

func (e *UnknownError) Unwrap() error { return ErrUnknown }
