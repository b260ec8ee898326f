package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseSizeAcceptsBinaryUnitsAndByteCounts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
	}{
		{"32MiB", 32 * MiB},
		{"4GiB", 4 * GiB},
		{"512KiB", 512 * KiB},
		{"1TiB", TiB},
		{"100B", 100},
		{"100", 100},
		{"0", 0},
		{"1048576", MiB},
		{"256 MiB", 256 * MiB},
		{" 8MiB ", 8 * MiB},
		{"1_024", 1024},
		{"+5", 5},
		{"0x100", 256},
		{"0o10", 8},
		{"0b101", 5},
		{"8388607TiB", 8388607 * TiB},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSizeRefusesWithReason(t *testing.T) {
	for _, tc := range []struct{ in, reason string }{
		{"", "empty"},
		{"lots", "must start with a number"},
		{"-1", "negative"},
		{"-1MiB", "negative"},
		{"4GB", `ambiguous; write "GiB"`},
		{"4KB", `ambiguous; write "KiB"`},
		{"4M", `ambiguous; write "MiB"`},
		{"4mib", `spelled "MiB"`},
		{"4 parsecs", "unknown unit"},
		{"1.5GiB", "fractions are not allowed"},
		{"8388608TiB", "too large"},
		{"99999999999999999999", "too large"},
		{"0xZZ", "not an integer"},
		{"true", "must start with a number"},
	} {
		_, err := ParseSize(tc.in)
		var se *SizeError
		if !errors.As(err, &se) || !strings.Contains(se.Reason, tc.reason) {
			t.Errorf("ParseSize(%q) error = %v; want a *SizeError saying %q", tc.in, err, tc.reason)
		}
	}
}

func TestSizeStringUsesLargestExactUnit(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0B"}, {100, "100B"}, {1024, "1KiB"}, {1536 * MiB, "1536MiB"}, {4 * GiB, "4GiB"},
		{2 * TiB, "2TiB"}, {MiB + 1, "1048577B"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q; want %q", int64(tc.in), got, tc.want)
		}
		text, _ := tc.in.MarshalText()
		var back Size
		if err := back.UnmarshalText(text); err != nil || back != tc.in {
			t.Errorf("round trip of %d through %q gave %d, %v", int64(tc.in), text, int64(back), err)
		}
	}
}

func TestParseDurationAcceptsGoSyntax(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"5m", 5 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"0", 0},
		{"0s", 0},
		{" 10s ", 10 * time.Second},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got.D() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseDurationRefusesWithReason(t *testing.T) {
	for _, tc := range []struct{ in, reason string }{
		{"", "empty"},
		{"30", `needs a unit, e.g. "30s"`},
		{"1.5", "needs a unit"},
		{"-5s", "negative"},
		{"soon", "not a duration"},
		{"5 minutes", "not a duration"},
	} {
		_, err := ParseDuration(tc.in)
		var de *DurationError
		if !errors.As(err, &de) || !strings.Contains(de.Reason, tc.reason) {
			t.Errorf("ParseDuration(%q) error = %v; want a *DurationError saying %q", tc.in, err, tc.reason)
		}
	}
}

func TestDurationStringDropsZeroComponents(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{5 * time.Minute, "5m"}, {time.Hour, "1h"}, {90 * time.Minute, "1h30m"}, {30 * time.Second, "30s"},
		{0, "0s"}, {1500 * time.Millisecond, "1.5s"}, {time.Hour + time.Second, "1h0m1s"},
	} {
		d := Duration(tc.in)
		if got := d.String(); got != tc.want {
			t.Errorf("Duration(%v).String() = %q; want %q", tc.in, got, tc.want)
		}
		text, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back != d {
			t.Errorf("round trip of %v through %q gave %v, %v", tc.in, text, back, err)
		}
	}
}
