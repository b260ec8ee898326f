package config

import (
	"path"
	"strings"
)

// ExpandDir returns the route's directory with its placeholders replaced:
// {state} by the state directory, {user} by the owner's name and {home} by
// the owner's home (owner routes). user must be a name the route's Match
// returned (ValidUserName holds), so that it cannot climb out of dir.
func (r Route) ExpandDir(state, user, home string) string {
	return expand(r.Dir, state, user, home)
}

// ExpandDir returns the app's directory with {state} replaced.
func (a App) ExpandDir(state string) string {
	if a.Dir == "" {
		return ""
	}
	return expand(a.Dir, state, "", "")
}

func expand(dir, state, user, home string) string {
	d := strings.NewReplacer(PlaceholderState, state, PlaceholderUser, user, PlaceholderHome, home).Replace(dir)
	return path.Clean(d)
}

// Match reports whether urlPath falls under the route. For an owner route
// it returns the user named by the {user} part of the path
// ("/~alice/cgi-bin/x" under "/~{user}/cgi-bin/" is alice) and refuses
// paths whose user part is not a valid name. prefix is the part of urlPath
// the route covers (with {user} filled in), rest the part after it.
func (r Route) Match(urlPath string) (user, prefix, rest string, ok bool) {
	before, after, owner := strings.Cut(r.Path, PlaceholderUser)
	if !owner {
		if !strings.HasPrefix(urlPath, r.Path) {
			return "", "", "", false
		}
		return "", r.Path, urlPath[len(r.Path):], true
	}
	if !strings.HasPrefix(urlPath, before) {
		return "", "", "", false
	}
	tail := urlPath[len(before):]
	i := strings.Index(tail, after)
	if i <= 0 {
		return "", "", "", false
	}
	user = tail[:i]
	if !ValidUserName(user) {
		return "", "", "", false
	}
	n := len(before) + i + len(after)
	return user, urlPath[:n], urlPath[n:], true
}
