package server

import (
	"fmt"
	"html/template"
	"net/http"
	"time"
)

// adminHandler serves the admin listener: the status page with the
// configuration's arithmetic and the recent failures with their causes.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>suserve status</title>
<style>body{font:15px/1.45 system-ui,sans-serif;margin:1.5em}td,th{padding:.15em .7em;text-align:left;vertical-align:top}pre{background:#f3f3f3;padding:.5em}</style>
</head><body>
<h1>suserve status</h1>
<p>{{.Software}}, up {{ago .Started}}, {{.Active}} requests in flight.</p>
{{range .Notes}}<p>{{.}}</p>{{end}}
<h2>Configuration</h2>
<pre>{{.Summary}}</pre>
{{if .Apps}}<h2>Apps</h2>
<table><tr><th>path</th><th>protocol</th><th>identity</th><th>workers (pids)</th><th>ready</th><th>in flight</th><th>waiting</th><th>started</th><th>last failure</th></tr>
{{range .Apps}}<tr><td>{{.Path}}</td><td>{{.Protocol}}</td><td>{{.Identity}}</td>{{with .Stats}}<td>{{.Pids}}</td><td>{{.Ready}}</td><td>{{.InFlight}}</td><td>{{.Waiting}}</td><td>{{.Started}}</td><td>{{if .LastFailure}}{{.LastFailure.Cause}}{{if .BackoffLeft}} (restarts held back {{.BackoffLeft}}){{end}}{{end}}</td>{{end}}</tr>
{{end}}</table>{{end}}
<h2>Recent failures ({{.Total}} since start)</h2>
{{if .Failures}}<table><tr><th>when</th><th>request</th><th>status</th><th>path</th><th>identity</th><th>cause</th></tr>
{{range .Failures}}<tr><td>{{ago .When}} ago</td><td><code>{{.ID}}</code></td><td>{{.Status}}</td><td>{{.Path}}</td><td>{{.Identity}}</td><td>{{.Cause}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}
</body></html>
`))

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	failures, total := s.recent.list()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	statusTemplate.Execute(w, map[string]any{
		"Software": Software(),
		"Started":  s.started,
		"Active":   s.Active(),
		"Notes":    s.opts.Notes,
		"Summary":  s.cfg.Summary(),
		"Apps":     s.appStatuses(),
		"Failures": failures,
		"Total":    total,
	})
}
