package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/suserve/suserve/internal/cell"
	"github.com/suserve/suserve/internal/config"
	"github.com/suserve/suserve/internal/spawn"
)

// Cells opens the cell pool [cells] describes. It returns nil cells (and a
// note saying so) for backend "none", and when suserve is not root, since
// only root may create cgroups for other identities' programs. close stops
// the pool and removes its cells.
func Cells(cfg *config.Config, log *slog.Logger) (cells spawn.Cells, pool *cell.Pool, note string, close func(), err error) {
	c := cfg.Cells
	nothing := func() {}
	if c.Backend == cell.None {
		return nil, nil, "cells are off ([cells] backend = \"none\"): no memory, pids or cpu limits, and a program that leaves its process group can outlive its request", nothing, nil
	}
	if os.Geteuid() != 0 && c.Backend == "auto" {
		return nil, nil, "cells are off: suserve was not started as root, and only root creates cgroups; programs have no memory, pids or cpu limits", nothing, nil
	}
	b, why, err := cell.Detect(c.Backend)
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("[cells] backend = %q: %w", c.Backend, err)
	}
	if b.Name() == cell.None {
		return nil, nil, "cells are off: " + why, nothing, nil
	}
	p, err := cell.Open(b, cell.Config{
		Root:          c.Root,
		Budget:        c.Budget.Bytes(),
		CellMemory:    c.CellMemory.Bytes(),
		CellPids:      int64(c.CellPids),
		CellCPUWeight: uint64(c.CellCPUWeight),
		MaxRequests:   c.CellMaxRequests,
		IdleEvict:     c.IdleEvict.D(),
		QueueTimeout:  c.QueueTimeout.D(),
		Logger:        log,
	})
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("[cells]: %w", err)
	}
	note = fmt.Sprintf("cells: %s (%s); budget %s / cell_memory %s = %d cells, pids %d per cell",
		b.Name(), why, c.Budget, c.CellMemory, c.Capacity(), c.CellPids)
	if !b.Enforces() {
		note += "; this hierarchy enforces no limits"
	}
	closeCells := func() {
		if err := p.Close(); err != nil {
			log.Warn("cells not all removed at stop", "err", err.Error())
		}
	}
	return cellPool{p}, p, note, closeCells, nil
}

// cellPool adapts the cell pool to the launcher's Cells interface.
type cellPool struct{ p *cell.Pool }

func (c cellPool) Acquire(ctx context.Context, identity string) (spawn.Slot, error) {
	l, err := c.p.Acquire(ctx, identity)
	if err != nil {
		return nil, err
	}
	return cellSlot{l}, nil
}

type cellSlot struct{ l *cell.Lease }

func (s cellSlot) Spawn(fork func(attr *syscall.SysProcAttr) (int, error)) (int, error) {
	return s.l.Spawn(fork)
}

func (s cellSlot) Kill(ctx context.Context) error { return s.l.Kill(ctx) }

func (s cellSlot) Events() (spawn.CellEvents, error) {
	ev, err := s.l.Events()
	lim := s.l.Limits()
	return spawn.CellEvents{OOMKills: ev.OOMKills, PidsMax: ev.PidsMax, Cell: s.l.Identity(), MemoryLimit: lim.Memory, PidsLimit: lim.Pids}, err
}

func (s cellSlot) Release() { s.l.Release() }
