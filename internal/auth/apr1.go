package auth

import (
	"crypto/md5"
	"strings"
)

// cryptAlphabet is the base-64 alphabet of crypt(3) hashes (DES, MD5-crypt,
// apr1, and bcrypt's salt and digest use the same characters in another order).
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const apr1Magic = "$apr1$"

// apr1 computes Apache's variant of Poul-Henning Kamp's MD5-crypt: the FreeBSD
// algorithm with the magic string "$apr1$" instead of "$1$" (apr_md5.c). salt
// is at most 8 characters; the result is the whole "$apr1$salt$digest" string.
//
// MD5-crypt is weak by today's standards; suserve verifies it so existing
// files keep working, and writes only bcrypt.
func apr1(password []byte, salt string) string {
	if i := strings.IndexByte(salt, '$'); i >= 0 {
		salt = salt[:i]
	}
	if len(salt) > 8 {
		salt = salt[:8]
	}

	alt := md5.New()
	alt.Write(password)
	alt.Write([]byte(salt))
	alt.Write(password)
	altSum := alt.Sum(nil)

	ctx := md5.New()
	ctx.Write(password)
	ctx.Write([]byte(apr1Magic))
	ctx.Write([]byte(salt))
	for n := len(password); n > 0; n -= 16 {
		ctx.Write(altSum[:min(n, 16)])
	}
	// The original feeds a zero byte for each set bit of the length and the
	// password's first byte for each clear bit; an accident of the reference
	// code that every implementation must copy.
	for n := len(password); n != 0; n >>= 1 {
		if n&1 != 0 {
			ctx.Write([]byte{0})
		} else {
			ctx.Write(password[:1])
		}
	}
	final := ctx.Sum(nil)

	// 1000 rounds, to slow down a dictionary attack (by 1990s standards).
	for i := range 1000 {
		r := md5.New()
		if i&1 != 0 {
			r.Write(password)
		} else {
			r.Write(final)
		}
		if i%3 != 0 {
			r.Write([]byte(salt))
		}
		if i%7 != 0 {
			r.Write(password)
		}
		if i&1 != 0 {
			r.Write(final)
		} else {
			r.Write(password)
		}
		final = r.Sum(final[:0])
	}

	var b strings.Builder
	b.Grow(len(apr1Magic) + len(salt) + 1 + 22)
	b.WriteString(apr1Magic)
	b.WriteString(salt)
	b.WriteByte('$')
	to64 := func(v uint32, n int) {
		for ; n > 0; n-- {
			b.WriteByte(cryptAlphabet[v&0x3f])
			v >>= 6
		}
	}
	to64(uint32(final[0])<<16|uint32(final[6])<<8|uint32(final[12]), 4)
	to64(uint32(final[1])<<16|uint32(final[7])<<8|uint32(final[13]), 4)
	to64(uint32(final[2])<<16|uint32(final[8])<<8|uint32(final[14]), 4)
	to64(uint32(final[3])<<16|uint32(final[9])<<8|uint32(final[15]), 4)
	to64(uint32(final[4])<<16|uint32(final[10])<<8|uint32(final[5]), 4)
	to64(uint32(final[11]), 2)
	return b.String()
}
