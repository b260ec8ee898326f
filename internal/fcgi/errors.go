package fcgi

import (
	"errors"
	"fmt"
	"net/http"
)

// ProtocolCause is a short, stable class of protocol violation.
type ProtocolCause string

// The ways a worker can break FastCGI 1.0.
const (
	CauseBadVersion       ProtocolCause = "bad record version"
	CauseUnknownType      ProtocolCause = "unknown record type"
	CauseUnexpectedRecord ProtocolCause = "unexpected record"
	CauseWrongRequestID   ProtocolCause = "wrong request id"
	CauseBadEndRequest    ProtocolCause = "malformed END_REQUEST"
	CauseBadPair          ProtocolCause = "malformed name-value pair"
	CauseTruncated        ProtocolCause = "connection closed mid-response"
)

// ProtocolError says how a peer broke the FastCGI protocol. A connection that
// produced one is never reused.
type ProtocolError struct {
	Cause  ProtocolCause
	Detail string // the facts: "record version 2, want 1"
	Err    error  // an underlying error such as io.ErrUnexpectedEOF, or nil
}

func (e *ProtocolError) Error() string {
	if e.Detail == "" {
		return "fastcgi: " + string(e.Cause)
	}
	return "fastcgi: " + string(e.Cause) + ": " + e.Detail
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// HTTPStatus is the status a client gets when a worker breaks the protocol:
// 502, the worker is a bad gateway.
func (e *ProtocolError) HTTPStatus() int { return http.StatusBadGateway }

// ProtocolStatus is the protocolStatus of an END_REQUEST (FastCGI 1.0 §5.5).
type ProtocolStatus uint8

// Protocol statuses, §5.5.
const (
	StatusRequestComplete ProtocolStatus = 0 // FCGI_REQUEST_COMPLETE
	StatusCantMultiplex   ProtocolStatus = 1 // FCGI_CANT_MPX_CONN
	StatusOverloaded      ProtocolStatus = 2 // FCGI_OVERLOADED
	StatusUnknownRole     ProtocolStatus = 3 // FCGI_UNKNOWN_ROLE
)

func (s ProtocolStatus) String() string {
	switch s {
	case StatusRequestComplete:
		return "FCGI_REQUEST_COMPLETE"
	case StatusCantMultiplex:
		return "FCGI_CANT_MPX_CONN"
	case StatusOverloaded:
		return "FCGI_OVERLOADED"
	case StatusUnknownRole:
		return "FCGI_UNKNOWN_ROLE"
	}
	return fmt.Sprintf("protocol status %d", uint8(s))
}

// Sentinels for errors.Is on a *RejectedError.
var (
	ErrCantMultiplex = errors.New("fastcgi: worker cannot multiplex connections")
	ErrOverloaded    = errors.New("fastcgi: worker overloaded")
	ErrUnknownRole   = errors.New("fastcgi: worker does not play the responder role")
)

// RejectedError is an END_REQUEST whose protocolStatus is not
// FCGI_REQUEST_COMPLETE: the worker refused the request.
type RejectedError struct {
	Status    ProtocolStatus
	AppStatus uint32
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("fastcgi: worker rejected the request: %s (app status %d)", e.Status, e.AppStatus)
}

// Is matches ErrCantMultiplex, ErrOverloaded and ErrUnknownRole by status.
func (e *RejectedError) Is(target error) bool {
	switch target {
	case ErrCantMultiplex:
		return e.Status == StatusCantMultiplex
	case ErrOverloaded:
		return e.Status == StatusOverloaded
	case ErrUnknownRole:
		return e.Status == StatusUnknownRole
	}
	return false
}

// HTTPStatus is 503 for an overloaded worker (come back later) and 502
// otherwise.
func (e *RejectedError) HTTPStatus() int {
	if e.Status == StatusOverloaded {
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// ConnError is a failure of the transport underneath the protocol: the
// worker's socket could not be reached, written or read.
type ConnError struct {
	Op  string // "dial", "write", "read"
	Err error
}

func (e *ConnError) Error() string { return "fastcgi: " + e.Op + ": " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// HTTPStatus is 502: the worker is unreachable or went away.
func (e *ConnError) HTTPStatus() int { return http.StatusBadGateway }

// BodyError is a failure reading the request body that was being sent as
// STDIN; the request was aborted. Err is the body's error (for instance an
// *http.MaxBytesError), so the gateway can answer 413 or 400.
type BodyError struct {
	Err error
}

func (e *BodyError) Error() string { return "fastcgi: reading request body: " + e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// ErrConnBusy is returned by Conn.Do while the connection carries another
// request: this client never multiplexes.
var ErrConnBusy = errors.New("fastcgi: connection busy with another request")

// ErrPoolClosed is returned by Pool.Do after Pool.Close.
var ErrPoolClosed = errors.New("fastcgi: pool closed")
