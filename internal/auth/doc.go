// Package auth decides who is asking: HTTP Basic credentials checked against
// an htpasswd file (bcrypt, Apache apr1 MD5, {SHA}), or a user name set by a
// trusted reverse proxy, or nobody (the route's anonymous identity). It keeps a
// short-lived cache of verified credentials so a busy user does not pay bcrypt
// on every request, and limits failed logins per client address.
package auth
