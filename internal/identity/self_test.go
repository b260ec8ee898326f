package identity

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func kernelGroups(t *testing.T) []uint32 {
	t.Helper()
	gs, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, g := range gs {
		out = append(out, uint32(g))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestSelfNamesTheProcessFromItsAccount(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	files := newAccountFiles(t,
		fmt.Sprintf("first:x:%d:%d::/home/first/:/bin/sh\nsecond:x:%d:%d::/home/second:/bin/sh\n", uid, gid, uid, gid),
		"")
	sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Logger: slog.New(slog.DiscardHandler)}
	id, err := Self(sys)
	if err != nil {
		t.Fatal(err)
	}
	if id.Name != "first" || id.Home != "/home/first" {
		t.Errorf("Self = %+v, want the name and home of the first account with uid %d", id, uid)
	}
	if id.UID != uint32(uid) || id.GID != uint32(gid) {
		t.Errorf("Self = uid %d gid %d, want %d %d", id.UID, id.GID, uid, gid)
	}
	// The groups are the kernel's, not the group file's (which is empty).
	if want := kernelGroups(t); !slices.Equal(id.Groups, want) {
		t.Errorf("Self groups = %v, want getgroups' %v", id.Groups, want)
	}
}

func TestSelfWithoutAnAccount(t *testing.T) {
	uid := os.Getuid()
	files := newAccountFiles(t, "someone:x:61001:61001::/home/someone:/bin/sh\n", "")
	sys := &System{PasswdPath: files.passwd, GroupPath: files.group, Logger: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name string
		sys  *System
		home string
		want string
	}{
		{"no system source", nil, "/var/lib/web/", "/var/lib/web"},
		{"no account with the uid", sys, "/var/lib/web", "/var/lib/web"},
		{"relative HOME is ignored", nil, "web", ""},
		{"no HOME", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOME", tt.home)
			id, err := Self(tt.sys)
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != strconv.Itoa(uid) || id.Home != tt.want || id.UID != uint32(uid) {
				t.Errorf("Self = %+v, want name %q home %q", id, strconv.Itoa(uid), tt.want)
			}
		})
	}
}

func TestSelfFailsWhenTheAccountFilesCannotBeRead(t *testing.T) {
	sys := &System{PasswdPath: filepath.Join(t.TempDir(), "missing"), GroupPath: "testdata/group", Logger: slog.New(slog.DiscardHandler)}
	if id, err := Self(sys); err == nil {
		t.Errorf("Self with an unreadable passwd = %+v, want an error", id)
	}
}
