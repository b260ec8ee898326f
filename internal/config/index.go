package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// index maps the keys of a TOML document to the lines that define them, so
// that problems found after decoding (a bad run_as in the third route) can
// name their line. Keys are dotted, with array-of-tables indices:
// "route[2].run_as", "identities.static[0].uid".
type index struct {
	doc     []byte
	starts  []int          // offset of each line's first byte
	entries []entry        // every key, in document order
	lines   map[string]int // key -> line of its first definition
	exprs   []expr         // top-level expressions, for the decoder's recovery
	counts  map[string]int // array-of-tables path -> elements so far
}

// entry is one key and the bytes that define it.
type entry struct {
	key        string
	line       int
	start, end int           // byte range: a key-value, or a table header's key
	kind       unstable.Kind // a key-value's value kind; Invalid for headers
	text       string        // a scalar value's text
}

// expr is one top-level expression of the document.
type expr struct {
	header     bool // [table] or [[array table]]
	start, end int  // bytes it occupies; a header's line
	key        string
	line       int
}

// parseError is a syntax error found while indexing.
type parseError struct {
	line int
	msg  string
	err  error
}

// buildIndex parses doc with go-toml's unstable parser. A syntax error stops
// it: TOML has no recovery point after one.
func buildIndex(doc []byte) (*index, *parseError) {
	idx := &index{doc: doc, lines: map[string]int{}, counts: map[string]int{}, starts: []int{0}}
	for i, b := range doc {
		if b == '\n' {
			idx.starts = append(idx.starts, i+1)
		}
	}
	lineAt := idx.lineAt
	var p unstable.Parser
	p.Reset(doc)
	prefix := ""
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, first, last := keyParts(n)
			if len(parts) == 0 {
				continue
			}
			var key string
			if n.Kind == unstable.Table {
				key = idx.resolve(parts)
			} else {
				parent := idx.resolve(parts[:len(parts)-1])
				path := join(parent, quoteKey(parts[len(parts)-1]))
				i := idx.counts[path]
				idx.counts[path] = i + 1
				key = path + "[" + strconv.Itoa(i) + "]"
			}
			prefix = key
			start := lineStart(doc, int(first.Offset))
			end := lineEnd(doc, int(last.Offset+last.Length))
			line := lineAt(int(first.Offset))
			idx.add(key, line, int(first.Offset), int(last.Offset+last.Length))
			idx.exprs = append(idx.exprs, expr{header: true, start: start, end: end, key: key, line: line})
		case unstable.KeyValue:
			key := idx.keyValue(prefix, n)
			idx.exprs = append(idx.exprs, expr{start: int(n.Raw.Offset), end: int(n.Raw.Offset + n.Raw.Length), key: key, line: lineAt(int(n.Raw.Offset))})
		}
	}
	if err := p.Error(); err != nil {
		pe := &parseError{line: 1, msg: err.Error(), err: err}
		if perr, ok := err.(*unstable.ParserError); ok {
			if off, ok := offsetIn(doc, perr.Highlight); ok {
				pe.line = lineAt(off)
			}
		}
		return nil, pe
	}
	return idx, nil
}

// keyValue indexes a key-value and, inside inline tables and arrays of
// inline tables, its nested keys. It returns the key's full name.
func (idx *index) keyValue(prefix string, n *unstable.Node) string {
	parts, _, _ := keyParts(n)
	names := make([]string, len(parts))
	for i, p := range parts {
		names[i] = quoteKey(p)
	}
	key := join(prefix, strings.Join(names, "."))
	start, end := int(n.Raw.Offset), int(n.Raw.Offset+n.Raw.Length)
	idx.add(key, idx.lineAt(start), start, end)
	e := &idx.entries[len(idx.entries)-1]
	if v := n.Value(); v.Kind != unstable.Array && v.Kind != unstable.InlineTable {
		e.kind, e.text = v.Kind, string(v.Data)
	} else {
		e.kind = v.Kind
	}
	idx.value(key, n.Value())
	return key
}

func (idx *index) value(key string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				idx.keyValue(key, c)
			}
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); i++ {
			if c := it.Node(); c.Kind == unstable.InlineTable {
				elem := key + "[" + strconv.Itoa(i) + "]"
				// An inline table's Raw is its opening brace.
				off := int(c.Raw.Offset)
				idx.add(elem, idx.lineAt(off), off, off+1)
				idx.value(elem, c)
			}
		}
	}
}

func (idx *index) add(key string, line, start, end int) {
	idx.entries = append(idx.entries, entry{key: key, line: line, start: start, end: end})
	if _, ok := idx.lines[key]; !ok {
		idx.lines[key] = line
	}
}

// resolve names a table path, entering the latest element of each array of
// tables on the way ("route.x" after three [[route]] is "route[2].x").
func (idx *index) resolve(parts []string) string {
	key := ""
	for _, p := range parts {
		key = join(key, quoteKey(p))
		if n := idx.counts[key]; n > 0 {
			key += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return key
}

// has reports whether key is written in the document.
func (idx *index) has(key string) bool {
	_, ok := idx.lines[key]
	return ok
}

// lineOf returns the line of key, or of its nearest enclosing key written in
// the document, or 0.
func (idx *index) lineOf(key string) int {
	for key != "" {
		if l, ok := idx.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// at returns the innermost key whose definition contains the byte offset.
func (idx *index) at(off int) (entry, bool) {
	best, found := entry{}, false
	for _, e := range idx.entries {
		if e.start <= off && off < max(e.end, e.start+1) {
			if !found || e.end-e.start <= best.end-best.start {
				best, found = e, true
			}
		}
	}
	return best, found
}

// exprAt returns the index of the top-level expression containing offset:
// the last one that starts at or before it.
func (idx *index) exprAt(off int) int {
	found := -1
	for i, e := range idx.exprs {
		if e.start <= off {
			found = i
		}
	}
	return found
}

// keyParts returns the parts of a node's key and the ranges of its first
// and last part.
func keyParts(n *unstable.Node) (parts []string, first, last unstable.Range) {
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if len(parts) == 0 {
			first = k.Raw
		}
		last = k.Raw
		parts = append(parts, string(k.Data))
	}
	return parts, first, last
}

// quoteKey writes a key part as TOML would need it.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return strconv.Quote(k)
		}
	}
	return k
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// offsetIn returns where b starts within doc, if b is a slice of doc.
func offsetIn(doc, b []byte) (int, bool) {
	if b == nil || cap(b) > cap(doc) {
		return 0, false
	}
	off := cap(doc) - cap(b)
	if off > len(doc) || off+len(b) > len(doc) {
		return 0, false
	}
	// Same backing array only if the pointers agree.
	if len(doc) == 0 || off == len(doc) {
		return off, len(b) == 0
	}
	if &doc[off] != &b[:1][0] {
		return 0, false
	}
	return off, true
}

// lineAt returns the 1-based line of a byte offset.
func (idx *index) lineAt(off int) int {
	return sort.Search(len(idx.starts), func(i int) bool { return idx.starts[i] > off })
}

func lineStart(doc []byte, off int) int {
	for off > 0 && doc[off-1] != '\n' {
		off--
	}
	return off
}

func lineEnd(doc []byte, off int) int {
	for off < len(doc) && doc[off] != '\n' {
		off++
	}
	return off
}
