package server

import (
	"slices"
	"testing"
)

func TestWithSysmonPollingKeepsTheAdministratorsGODEBUG(t *testing.T) {
	for _, tt := range []struct{ in, want []string }{
		{nil, []string{"GODEBUG=" + SysmonPolling}},
		{[]string{"A=1", "GODEBUG="}, []string{"A=1", "GODEBUG=" + SysmonPolling}},
		{[]string{"GODEBUG=madvdontneed=1", "B=2"}, []string{"GODEBUG=madvdontneed=1," + SysmonPolling, "B=2"}},
		// The administrator's schedtrace is theirs.
		{[]string{"GODEBUG=gctrace=1, schedtrace=1000"}, []string{"GODEBUG=gctrace=1, schedtrace=1000"}},
	} {
		if got := WithSysmonPolling(slices.Clone(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("WithSysmonPolling(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
