// Package app runs out-of-process applications: persistent FastCGI or HTTP
// workers under a configured identity (or one pool per authenticated user),
// started on the first request, restarted with backoff when they exit,
// stopped when idle, and proxied to over a private unix socket. It never
// switches users or touches cgroups itself: a Launcher starts each worker.
package app
