package cell

import (
	"bufio"
	"bytes"
	"fmt"

	"strconv"
	"strings"
)

// FormatBytes writes n in the largest binary unit that divides it exactly
// ("4GiB", "256MiB", "1536KiB"), the way the configuration spells sizes.
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for i < len(units)-1 && n != 0 && n%1024 == 0 {
		n /= 1024
		i++
	}
	return strconv.FormatInt(n, 10) + units[i]
}

// approxBytes writes n rounded to one decimal in the largest unit below it,
// for host memory, which is rarely a round number.
func approxBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for i < len(units)-1 && f >= 1024 {
		f /= 1024
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + units[i]
}

// HostMemory reads MemTotal from /proc/meminfo, in bytes.
func HostMemory() (int64, error) {
	b, err := readFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemTotal(b)
}

func parseMemTotal(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "MemTotal" {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			break
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	return 0, fmt.Errorf("cell: no MemTotal line in /proc/meminfo")
}

// Capacity is the text of `suserve capacity`: how many cells the budget
// holds at the configured cell size, what other sizes would give, and a
// warning when the budget promises more memory than the host has. It is
// the trade between a cell's size and the number of cells, made visible.
func Capacity(hostMem, budget, cellMemory int64) string {
	var b strings.Builder
	if cellMemory <= 0 || budget <= 0 {
		fmt.Fprintf(&b, "budget %s / cell_memory %s: both must be positive\n", FormatBytes(budget), FormatBytes(cellMemory))
		return b.String()
	}
	cells := budget / cellMemory
	fmt.Fprintf(&b, "budget %s / cell_memory %s = %d cells", FormatBytes(budget), FormatBytes(cellMemory), cells)
	if rem := budget - cells*cellMemory; rem > 0 {
		fmt.Fprintf(&b, " (%s of the budget unused)", FormatBytes(rem))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "at most %d identities run programs at once; the next waits for an idle cell or is refused with 503\n", cells)
	if hostMem > 0 {
		fmt.Fprintf(&b, "host memory %s; budget is %.0f%% of it\n", approxBytes(hostMem), 100*float64(budget)/float64(hostMem))
		if budget > hostMem {
			fmt.Fprintf(&b, "WARNING: budget %s exceeds host memory %s: cells can be admitted that the host cannot back, and the host's OOM killer, not the cell's, will pick the victim\n",
				FormatBytes(budget), approxBytes(hostMem))
		}
	}
	b.WriteString("\ncell_memory  cells in budget")
	if hostMem > 0 {
		b.WriteString("  cells in host memory")
	}
	b.WriteString("\n")
	for sz := int64(32 << 20); sz <= 8<<30; sz *= 2 {
		mark := "  "
		if sz == cellMemory {
			mark = "* "
		}
		fmt.Fprintf(&b, "%s%-10s  %15d", mark, FormatBytes(sz), budget/sz)
		if hostMem > 0 {
			fmt.Fprintf(&b, "  %20d", hostMem/sz)
		}
		b.WriteString("\n")
	}
	if !isPow2Row(cellMemory) {
		fmt.Fprintf(&b, "* %-10s  %15d", FormatBytes(cellMemory), cells)
		if hostMem > 0 {
			fmt.Fprintf(&b, "  %20d", hostMem/cellMemory)
		}
		b.WriteString("\n")
	}
	b.WriteString("(* the configured size)\n")
	return b.String()
}

func isPow2Row(n int64) bool {
	for sz := int64(32 << 20); sz <= 8<<30; sz *= 2 {
		if sz == n {
			return true
		}
	}
	return false
}
