package cgi

// The package's own tests name the header reader's error values as they
// were named before the reader was exported for the app gateway.
type headerError = HeaderError

var errIncomplete = ErrIncompleteHeader
