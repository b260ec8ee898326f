package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration, where it is.
type Problem struct {
	File string // the file, or "(embedded default)"
	Line int    // 1-based; 0 when the problem has no single place (a missing table)
	Key  string // dotted key with array indices: "route[2].run_as"; "" for syntax errors
	Msg  string
	Err  error // the underlying error (a *SizeError, a go-toml *DecodeError, ...), if any
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

func (p Problem) Unwrap() error { return p.Err }

// Problems is every problem found in one configuration, in line order. It is
// the error Parse and Load return; each problem is on its own line,
// "file:line: key: msg".
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As reach each problem and its cause.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i := range ps {
		errs[i] = ps[i]
	}
	return errs
}

// maxProblems bounds the report: past it, one more problem says how many
// were left out. A file with hundreds of problems is the wrong file.
const maxProblems = 100

// collector gathers problems for one file, locating keys through the index.
type collector struct {
	file  string
	idx   *index
	list  Problems
	byKey map[string]bool // keys that already have a problem: later checks stay quiet
}

func newCollector(file string, idx *index) *collector {
	return &collector{file: file, idx: idx, byKey: map[string]bool{}}
}

// at records a problem at an explicit line.
func (c *collector) at(line int, key string, err error, format string, args ...any) {
	c.list = append(c.list, Problem{File: c.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...), Err: err})
	c.byKey[key] = true
}

// add records a problem with key, at the line of key or, when key is not in
// the file (a default), of the nearest enclosing table that is. A key that
// already has a problem gets no second one: a value that failed to decode
// keeps its default and must not be blamed again by a semantic check.
func (c *collector) add(key, format string, args ...any) {
	if c.byKey[key] {
		return
	}
	c.at(c.idx.lineOf(key), key, nil, format, args...)
}

func (c *collector) problems() Problems {
	sort.SliceStable(c.list, func(i, j int) bool {
		li, lj := c.list[i].Line, c.list[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0 // problems without a line go last
		}
		return li < lj
	})
	if len(c.list) > maxProblems {
		n := len(c.list) - maxProblems
		c.list = append(c.list[:maxProblems:maxProblems], Problem{File: c.file, Msg: fmt.Sprintf("%d more problems not shown", n)})
	}
	return c.list
}
