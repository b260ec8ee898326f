package cgi

import "context"

// Record is what one request's log lines say about it. The server's
// middleware creates it with the request id and the authenticated user; the
// gateway fills in the program, the identity it ran as and, when it failed,
// the cause, so that the access log can carry them.
type Record struct {
	ID       string // request id, in every log line of the request
	User     string // authenticated user: REMOTE_USER; "" for anonymous requests
	AuthType string // authentication scheme: AUTH_TYPE ("Basic")
	Identity string // who the program ran as; "" is the server's own user
	Program  string // SCRIPT_FILENAME of the program run
	Cause    string // the failure's cause, "" when the request succeeded
}

type recordKey struct{}

// NewContext returns a context carrying rec.
func NewContext(ctx context.Context, rec *Record) context.Context {
	return context.WithValue(ctx, recordKey{}, rec)
}

// RecordFrom returns the Record carried by ctx, or a new empty one, never nil.
func RecordFrom(ctx context.Context) *Record {
	if rec, ok := ctx.Value(recordKey{}).(*Record); ok && rec != nil {
		return rec
	}
	return &Record{}
}

type redirectKey struct{}

// redirectDepth is how many local redirects led to this request.
func redirectDepth(ctx context.Context) int {
	d, _ := ctx.Value(redirectKey{}).(int)
	return d
}
