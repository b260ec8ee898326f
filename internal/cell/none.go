package cell

import (
	"context"
	"syscall"
)

// noneBackend keeps no groups: the operator chose no limits, or the host has
// nothing usable. Spawn forks in place; Kill reports ErrNotTracked so the
// launcher kills the process group instead.
type noneBackend struct{}

func newNone() Backend { return noneBackend{} }

func (noneBackend) Name() string                       { return None }
func (noneBackend) Enforces() bool                     { return false }
func (noneBackend) Base() string                       { return "" }
func (noneBackend) Create(string, *Limits) error       { return nil }
func (noneBackend) Kill(context.Context, string) error { return ErrNotTracked }
func (noneBackend) Procs(string) ([]int, error)        { return nil, nil }
func (noneBackend) Events(string) (Events, error)      { return Events{}, nil }
func (noneBackend) Remove(string) error                { return nil }
func (noneBackend) Children(string) ([]string, error)  { return nil, nil }
func (noneBackend) Spawn(_ string, fn SpawnFunc) (int, error) {
	return fn(&syscall.SysProcAttr{})
}
