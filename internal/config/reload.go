package config

import "reflect"

// RestartKeys lists what differs between the running configuration and a
// new one that a reload cannot apply: the listeners, the front's user, the
// state directory and the log format are set up once at start, and the
// identities and cells belong to the launcher, which outlives reloads.
// Routes, apps, [auth], [cgi], diagnostics, server_name and
// shutdown_timeout are applied by a reload.
func RestartKeys(running, next *Config) []string {
	var keys []string
	for _, k := range []struct {
		key  string
		a, b any
	}{
		{"server.listen", running.Server.Listen, next.Server.Listen},
		{"server.admin_listen", running.Server.AdminListen, next.Server.AdminListen},
		{"server.user", running.Server.User, next.Server.User},
		{"server.state_dir", running.Server.StateDir, next.Server.StateDir},
		{"server.log_format", running.Server.LogFormat, next.Server.LogFormat},
		{"identities", running.Identities, next.Identities},
		{"cells", running.Cells, next.Cells},
	} {
		if !reflect.DeepEqual(k.a, k.b) {
			keys = append(keys, k.key)
		}
	}
	return keys
}
