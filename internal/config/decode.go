package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// decodeStrict decodes doc into a copy of the defaults with unknown keys
// disallowed, and reports every problem, not just the first. go-toml stops at
// the first value it cannot decode; each time it does, the problem is
// recorded, the offending top-level expression is blanked out (spaces, so
// that every line keeps its number) and decoding starts again. Unknown keys
// come all together at the end, once everything else decodes.
func decodeStrict(doc []byte, idx *index, c *collector) *Config {
	work := bytes.Clone(doc)
	blanked := make([]bool, len(idx.exprs))
	for range len(idx.exprs) + 1 {
		if len(c.list) > maxProblems {
			return defaults() // the report is capped: stop looking
		}
		cfg := defaults()
		err := decodeOnce(work, cfg)
		if err == nil {
			return cfg
		}
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			for i := range strict.Errors {
				e := &strict.Errors[i]
				if len(c.list) > maxProblems {
					// Past the cap only the count is shown: skip locating.
					c.list = append(c.list, Problem{File: c.file, Msg: "unknown key", Err: e})
					continue
				}
				line, col := e.Position()
				key := strings.Join(e.Key(), ".")
				if ent, ok := idx.at(offsetOf(work, line, col)); ok {
					key = ent.key
				}
				c.at(line, key, e, "%s", unknownMessage(key, e))
			}
			return cfg
		}
		var de *toml.DecodeError
		var ei int
		if errors.As(err, &de) {
			line, col := de.Position()
			off := offsetOf(work, line, col)
			key := strings.Join(de.Key(), ".")
			var cause error = de
			if ent, ok := idx.at(off); ok {
				key = ent.key
				if err := unitError(ent); err != nil {
					cause = err
				}
			}
			msg := friendlyMessage(de.Error())
			if strings.Contains(msg, "cannot store an array table in a struct") {
				key = strings.TrimSuffix(key, "[0]")
				msg = fmt.Sprintf("is a single table: write [%s], not [[%s]]", key, key)
			}
			c.at(line, key, cause, "%s", msg)
			ei = idx.exprAt(off)
		} else {
			// An error without a position: a text unmarshaler refusing a
			// TOML integer or float ("timeout = 30"). Find the expression
			// whose inclusion makes decoding fail.
			ei = firstFailing(work, idx)
			if ei < 0 {
				c.at(0, "", err, "%s", friendlyMessage(err.Error()))
				return cfg
			}
			x := idx.exprs[ei]
			c.at(x.line, x.key, err, "%s", friendlyMessage(err.Error()))
		}
		if ei < 0 || blanked[ei] {
			return cfg // nothing left to blank: report what was found
		}
		blanked[ei] = true
		end := idx.exprs[ei].end
		if idx.exprs[ei].header {
			// A table that cannot be decoded takes its key-values with it;
			// left behind they would land in the previous table.
			end = len(work)
			for j := ei + 1; j < len(idx.exprs); j++ {
				if idx.exprs[j].header {
					end = idx.exprs[j].start
					break
				}
				blanked[j] = true
			}
		}
		blank(work, idx.exprs[ei].start, end)
	}
	return defaults()
}

func decodeOnce(doc []byte, cfg *Config) error {
	return toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().Decode(cfg)
}

// firstFailing returns the index of the first top-level expression such
// that decoding the document up to and including it fails, or -1.
func firstFailing(doc []byte, idx *index) int {
	fails := func(k int) bool {
		prefix := bytes.Clone(doc)
		if k < len(idx.exprs) {
			blank(prefix, idx.exprs[k].start, len(prefix))
		}
		err := decodeOnce(prefix, defaults())
		var strict *toml.StrictMissingError
		return err != nil && !errors.As(err, &strict)
	}
	lo, hi := 0, len(idx.exprs)
	if !fails(hi) {
		return -1
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi - 1
}

// blank replaces doc[start:end] with spaces, keeping line feeds.
func blank(doc []byte, start, end int) {
	start, end = max(start, 0), min(end, len(doc))
	for i := start; i < end; i++ {
		if doc[i] != '\n' {
			doc[i] = ' '
		}
	}
}

// offsetOf converts go-toml's 1-based line and byte column to an offset.
func offsetOf(doc []byte, line, col int) int {
	off := 0
	for l := 1; l < line && off < len(doc); off++ {
		if doc[off] == '\n' {
			l++
		}
	}
	return min(off+max(col-1, 0), len(doc))
}

var mismatch = regexp.MustCompile(`cannot decode TOML (.+?) into (?:struct field \S+ of type )?(\S+)$`)

// friendlyMessage rewrites go-toml's messages in the operator's terms.
func friendlyMessage(msg string) string {
	msg = strings.TrimPrefix(msg, "toml: ")
	if m := mismatch.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("expected %s, not a TOML %s", goTypeWords(m[2]), m[1])
	}
	return msg
}

func goTypeWords(t string) string {
	switch t {
	case "int", "int64":
		return "an integer"
	case "uint32":
		return "a non-negative integer"
	case "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "config.Size":
		return `a size such as "256MiB"`
	case "config.Duration":
		return `a duration such as "30s"`
	case "[]string":
		return "an array of strings"
	case "[]uint32":
		return "an array of integers"
	case "[]config.Route":
		return "[[route]] tables"
	case "[]config.App":
		return "[[app]] tables"
	case "[]config.StaticIdentity":
		return "[[identities.static]] tables"
	}
	if strings.HasPrefix(t, "config.") {
		return "a table"
	}
	return t
}

// unknownMessage says that a key or table is not part of the schema, and
// which known key it most resembles.
func unknownMessage(key string, e *toml.DecodeError) string {
	what := "unknown key"
	if strings.Contains(e.Error(), "missing table") {
		what = "unknown table"
	}
	path := strings.Split(stripIndices(key), ".")
	known := knownKeys(reflect.TypeFor[Config](), path[:len(path)-1])
	if s := closest(path[len(path)-1], known); s != "" {
		return fmt.Sprintf("%s; did you mean %q?", what, s)
	}
	if len(known) > 0 && len(known) <= 12 {
		return fmt.Sprintf("%s; known keys here: %s", what, strings.Join(known, ", "))
	}
	return what
}

var indices = regexp.MustCompile(`\[\d+\]`)

func stripIndices(key string) string { return indices.ReplaceAllString(key, "") }

// unknownEntries returns the written keys that the schema does not have
// (the outermost of each unknown subtree), as DisallowUnknownFields would
// report them.
func unknownEntries(idx *index) []entry {
	root := reflect.TypeFor[Config]()
	var out []entry
	for _, e := range idx.entries {
		parts := strings.Split(stripIndices(e.key), ".")
		if typeAt(root, parts) != nil {
			continue
		}
		parent := typeAt(root, parts[:len(parts)-1])
		for parent != nil && (parent.Kind() == reflect.Slice || parent.Kind() == reflect.Pointer) {
			parent = parent.Elem()
		}
		if parent != nil && parent.Kind() == reflect.Struct {
			out = append(out, e)
		}
	}
	return out
}

// unitError re-parses a size or duration that go-toml refused, to recover
// the typed error (*SizeError, *DurationError) that go-toml flattened into
// a message.
func unitError(e entry) error {
	switch typeAt(reflect.TypeFor[Config](), strings.Split(stripIndices(e.key), ".")) {
	case reflect.TypeFor[Size]():
		_, err := ParseSize(e.text)
		return err
	case reflect.TypeFor[Duration]():
		_, err := ParseDuration(e.text)
		return err
	}
	return nil
}

// checkBareDurations reports durations written as bare numbers. go-toml
// stores a TOML integer straight into an integer-kinded field, so
// "idle_evict = 30" would otherwise mean 30 nanoseconds.
func checkBareDurations(idx *index, c *collector) {
	durationType := reflect.TypeFor[Duration]()
	for _, e := range idx.entries {
		if e.kind != unstable.Integer && e.kind != unstable.Float {
			continue
		}
		if t := typeAt(reflect.TypeFor[Config](), strings.Split(stripIndices(e.key), ".")); t == durationType {
			raw := strings.TrimSpace(string(idx.doc[e.start:e.end]))
			if _, v, ok := strings.Cut(raw, "="); ok {
				raw = strings.TrimSpace(v)
			}
			if raw == "0" {
				continue // zero needs no unit
			}
			c.at(e.line, e.key, nil, "%s is a bare number; a duration needs a unit, e.g. \"%ss\" (ms, s, m, h)", raw, raw)
		}
	}
}

// typeAt returns the Go type of the key at path in t, or nil.
func typeAt(t reflect.Type, path []string) reflect.Type {
	for _, p := range path {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, p)
		if !ok {
			return nil
		}
		t = f.Type
	}
	return t
}

// knownKeys lists the TOML keys of the table at path in t.
func knownKeys(t reflect.Type, path []string) []string {
	if t = typeAt(t, path); t == nil {
		return nil
	}
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("toml") == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// closest returns the known key nearest to k (edit distance at most 2, or
// one being a prefix of the other), or "".
func closest(k string, known []string) string {
	best, bestD := "", 3
	for _, c := range known {
		d := editDistance(strings.ToLower(k), c)
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
