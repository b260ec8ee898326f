package app

import (
	"bufio"
	"net/http"

	"github.com/suserve/suserve/internal/cgi"
)

// readCGIHeader reads the CGI response header block (RFC 3875 §6.3) at the
// start of a FastCGI worker's STDOUT with the CGI gateway's reader, leaving
// br at the first body byte. It returns the status the client gets (the
// Status field, else 302 for a Location (§6.2.4), else 200) and the header
// fields to send, Location among them: an app's redirects, local ones
// included, go to the client. Errors are cgi.ReadHeader's:
// cgi.ErrIncompleteHeader, a *cgi.HeaderError, or a read error.
func readCGIHeader(br *bufio.Reader) (int, http.Header, error) {
	rh, err := cgi.ReadHeader(br)
	if err != nil {
		return 0, nil, err
	}
	status := rh.Status
	if rh.Location != "" {
		rh.Header.Set("Location", rh.Location)
		if status == 0 {
			status = http.StatusFound
		}
	}
	if status == 0 {
		status = http.StatusOK
	}
	return status, rh.Header, nil
}
