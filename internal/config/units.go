package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In the configuration it is written with a binary
// unit ("512KiB", "32MiB", "4GiB", "1TiB", "100B") or as a plain integer count
// of bytes. Decimal units (KB, MB, GB, TB) are refused rather than guessed:
// "4GB" is 4,000,000,000 bytes to a disk vendor and 4 GiB to most operators,
// and a cell limit off by 7% is the kind of silent surprise suserve exists to
// remove.
type Size int64

// Binary size units.
const (
	Byte Size = 1
	KiB       = 1024 * Byte
	MiB       = 1024 * KiB
	GiB       = 1024 * MiB
	TiB       = 1024 * GiB
)

var sizeUnits = []struct {
	name string
	size Size
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", Byte},
}

// SizeError says why a text is not a size.
type SizeError struct {
	Text   string
	Reason string
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("invalid size %q: %s", e.Text, e.Reason)
}

// ParseSize parses a size: an integer followed by an optional binary unit
// (B, KiB, MiB, GiB, TiB; spaces between number and unit are allowed), or a
// plain integer count of bytes (decimal, or 0x/0o/0b as TOML integers allow).
func ParseSize(text string) (Size, error) {
	s := strings.TrimSpace(text)
	if s == "" {
		return 0, &SizeError{text, `empty; write a number with a unit, e.g. "256MiB"`}
	}
	s = strings.TrimPrefix(s, "+")
	if strings.HasPrefix(s, "-") {
		return 0, &SizeError{text, "must not be negative"}
	}
	// A TOML integer arrives here as its raw text: 0x, 0o and 0b prefixes
	// and underscores between digits are legal there.
	if len(s) > 2 && s[0] == '0' && strings.ContainsRune("xob", rune(s[1])) {
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return 0, &SizeError{text, "not an integer"}
		}
		return Size(n), nil
	}
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
		i++
	}
	digits, unit := strings.ReplaceAll(s[:i], "_", ""), strings.TrimSpace(s[i:])
	if digits == "" {
		return 0, &SizeError{text, `must start with a number, e.g. "256MiB"`}
	}
	if strings.HasPrefix(unit, ".") {
		return 0, &SizeError{text, `fractions are not allowed; use a smaller unit, e.g. "1536MiB" for 1.5GiB`}
	}
	mult := Size(0)
	if unit == "" {
		mult = Byte
	}
	for _, u := range sizeUnits {
		if unit == u.name {
			mult = u.size
		}
	}
	if mult == 0 {
		switch strings.ToUpper(unit) {
		case "KB", "MB", "GB", "TB", "K", "M", "G", "T":
			bin := strings.ToUpper(unit[:1]) + "iB"
			return 0, &SizeError{text, fmt.Sprintf("unit %q is ambiguous; write %q (binary, 1024-based) or a plain byte count", unit, bin)}
		case "KIB", "MIB", "GIB", "TIB":
			return 0, &SizeError{text, fmt.Sprintf("unit %q is spelled %q", unit, strings.ToUpper(unit[:1])+"iB")}
		}
		return 0, &SizeError{text, fmt.Sprintf("unknown unit %q; use B, KiB, MiB, GiB or TiB", unit)}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, &SizeError{text, "too large"}
	}
	return Size(n) * mult, nil
}

// String writes the size in the largest binary unit that represents it
// exactly: 4GiB, 1536MiB, 100B.
func (s Size) String() string {
	if s == 0 {
		return "0B"
	}
	for _, u := range sizeUnits {
		if s%u.size == 0 {
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B" // negative values only
}

// Bytes returns the size as a byte count.
func (s Size) Bytes() int64 { return int64(s) }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Duration is a time.Duration written in Go syntax: "30s", "5m", "1h30m",
// "250ms". Negative durations are refused; a bare number is refused because
// its unit would be a guess.
type Duration time.Duration

// DurationError says why a text is not a duration.
type DurationError struct {
	Text   string
	Reason string
	Err    error // from time.ParseDuration, when it failed
}

func (e *DurationError) Error() string {
	return fmt.Sprintf("invalid duration %q: %s", e.Text, e.Reason)
}

func (e *DurationError) Unwrap() error { return e.Err }

// ParseDuration parses a non-negative duration in Go syntax.
func ParseDuration(text string) (Duration, error) {
	s := strings.TrimSpace(text)
	if s == "" {
		return 0, &DurationError{Text: text, Reason: `empty; write a number with a unit, e.g. "30s"`}
	}
	if _, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64); err == nil && s != "0" {
		return 0, &DurationError{Text: text, Reason: fmt.Sprintf("needs a unit, e.g. \"%ss\" (s, m, h, ms)", strings.TrimPrefix(s, "+"))}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &DurationError{Text: text, Reason: `not a duration; write e.g. "30s", "5m" or "1h30m"`, Err: err}
	}
	if d < 0 {
		return 0, &DurationError{Text: text, Reason: "must not be negative"}
	}
	return Duration(d), nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes the duration in Go syntax, without the zero components Go
// adds ("5m", not "5m0s").
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
