package config

import "fmt"

// Parse decodes and validates a configuration. file names the source in
// problems. The error, if any, is Problems: every syntax error, unknown key,
// wrong type and semantic problem, each with its line and key. TOML syntax
// errors stop parsing at the first one, as the format has no recovery point.
func Parse(data []byte, file string) (*Config, error) {
	if file == "" {
		file = "(config)"
	}
	if len(data) > maxFileSize {
		return nil, Problems{{File: file, Msg: fmt.Sprintf("configuration is larger than %d bytes", maxFileSize)}}
	}
	idx, perr := buildIndex(data)
	if perr != nil {
		return nil, Problems{{File: file, Line: perr.line, Msg: "syntax error: " + perr.msg, Err: perr.err}}
	}
	c := newCollector(file, idx)
	// go-toml renders each unknown key's context from the start of the
	// document, which is quadratic in a file of nothing but unknown keys;
	// past the report's cap, list them from the index instead.
	if unknown := unknownEntries(idx); len(unknown) > maxProblems {
		for _, e := range unknown {
			c.at(e.line, e.key, nil, "unknown key")
		}
		return nil, c.problems()
	}
	cfg := decodeStrict(data, idx, c)
	checkBareDurations(idx, c)
	cfg.File = file
	fillDefaults(cfg, idx)
	validate(cfg, c)
	if len(c.list) > 0 {
		return nil, c.problems()
	}
	return cfg, nil
}

// fillDefaults sets the defaults of keys inside [[route]], [[app]] and
// [[identities.static]] entries that the file leaves out. (The tables'
// defaults are in place before decoding.) Presence is taken from the file,
// so that an explicit "workers = 0" is refused rather than replaced.
func fillDefaults(cfg *Config, idx *index) {
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		k := fmt.Sprintf("route[%d]", i)
		r.Line = idx.lineOf(k)
		if !idx.has(k + ".run_as") {
			r.RunAs = RunAsSelf
		}
	}
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		k := fmt.Sprintf("app[%d]", i)
		a.Line = idx.lineOf(k)
		if !idx.has(k + ".run_as") {
			a.RunAs = RunAsAccount
		}
		if !idx.has(k + ".workers") {
			a.Workers = DefaultAppWorkers
		}
		if !idx.has(k + ".concurrency") {
			a.Concurrency = DefaultAppConcurrency(a.Protocol)
		}
		if !idx.has(k + ".idle_stop") {
			a.IdleStop = defaultAppIdleStop
		}
		if !idx.has(k + ".start_timeout") {
			a.StartTimeout = defaultAppStartTimeout
		}
		if !idx.has(k + ".max_queue") {
			a.MaxQueue = DefaultAppMaxQueue
		}
	}
}
