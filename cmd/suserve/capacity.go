package main

import (
	"fmt"
	"io"

	"github.com/suserve/suserve/internal/cell"
)

// capacity prints the cell arithmetic of a configuration and a table of
// cell size against cell count for this host's memory: the trade an
// operator makes between how large one identity's context is and how many
// can exist at once.
func capacity(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("capacity", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := loadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "suserve capacity: %v\n", err)
		return 1
	}
	host, err := cell.HostMemory()
	if err != nil {
		fmt.Fprintf(stderr, "suserve capacity: reading the host's memory: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", displayName(path))
	fmt.Fprint(stdout, cell.Capacity(host, cfg.Cells.Budget.Bytes(), cfg.Cells.CellMemory.Bytes()))
	return 0
}
