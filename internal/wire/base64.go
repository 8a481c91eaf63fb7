package wire

import "encoding/binary"

// decodeBase64 decodes canonical standard base64 (RFC 4648 alphabet, length
// a multiple of four, "=" padding only at the end) into dst, which must
// have room for len(src)/4*3 bytes, and reports how many bytes it wrote.
// ok is false for anything else (a line break, a URL-safe or unpadded
// form, a stray character); the caller then uses the lenient decoder, so
// for every input it accepts the result is decodeBase64Lenient's (trailing
// bits of the last group are dropped the same way).
//
// It exists because the receiving side of a large Buffer in JSON mode spent
// most of its time in encoding/base64's decoder: four lookups in tables
// already shifted into place and one range check per group, two groups a
// round, make it about twice as fast.
func decodeBase64(dst, src []byte) (n int, ok bool) {
	if len(src)%4 != 0 {
		return 0, false
	}
	if len(src) == 0 {
		return 0, true
	}
	body := src[:len(src)-4] // the last group may carry padding
	i := 0
	for ; i+8 <= len(body); i += 8 {
		s := body[i : i+8 : i+8]
		x := b64[0][s[0]] | b64[1][s[1]] | b64[2][s[2]] | b64[3][s[3]]
		y := b64[0][s[4]] | b64[1][s[5]] | b64[2][s[6]] | b64[3][s[7]]
		if (x|y)>>24 != 0 {
			return 0, false
		}
		// Eight bytes written, six kept: the last group still follows,
		// so dst has room for the two extra.
		binary.BigEndian.PutUint64(dst[n:n+8:n+8], uint64(x)<<40|uint64(y)<<16)
		n += 6
	}
	for ; i < len(body); i += 4 {
		s := body[i : i+4 : i+4]
		x := b64[0][s[0]] | b64[1][s[1]] | b64[2][s[2]] | b64[3][s[3]]
		if x>>24 != 0 {
			return 0, false
		}
		d := dst[n : n+3 : n+3]
		d[0], d[1], d[2] = byte(x>>16), byte(x>>8), byte(x)
		n += 3
	}
	s := src[len(src)-4:]
	switch {
	case s[2] == '=' && s[3] == '=':
		x := b64[0][s[0]] | b64[1][s[1]]
		if x>>24 != 0 {
			return 0, false
		}
		dst[n] = byte(x >> 16)
		return n + 1, true
	case s[3] == '=':
		x := b64[0][s[0]] | b64[1][s[1]] | b64[2][s[2]]
		if x>>24 != 0 {
			return 0, false
		}
		dst[n], dst[n+1] = byte(x>>16), byte(x>>8)
		return n + 2, true
	default:
		x := b64[0][s[0]] | b64[1][s[1]] | b64[2][s[2]] | b64[3][s[3]]
		if x>>24 != 0 {
			return 0, false
		}
		dst[n], dst[n+1], dst[n+2] = byte(x>>16), byte(x>>8), byte(x)
		return n + 3, true
	}
}

// b64[k][c] is the value of base64 character c placed as the k-th of a
// group of four (shifted left by 18-6k), or all ones for a byte that is
// not in the standard alphabet ("=" included).
var b64 = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for k := range t {
		for c := range t[k] {
			t[k][c] = ^uint32(0)
		}
		for v, c := range []byte(alphabet) {
			t[k][c] = uint32(v) << (18 - 6*k)
		}
	}
	return t
}()

// encodeBase64 writes src as standard base64 with padding into dst, which
// must hold base64.StdEncoding.EncodedLen(len(src)) bytes: the output of
// encoding/base64's StdEncoding.Encode, from a table of the 4096 pairs of
// characters twelve bits give (8 KiB, in L1 cache), two lookups per three
// bytes instead of four.
func encodeBase64(dst, src []byte) {
	n := 0
	i := 0
	for ; i+6 <= len(src); i += 6 {
		s := src[i : i+6 : i+6]
		x := uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2])
		y := uint32(s[3])<<16 | uint32(s[4])<<8 | uint32(s[5])
		binary.BigEndian.PutUint64(dst[n:n+8:n+8], uint64(b64pairs[x>>12])<<48|uint64(b64pairs[x&0xfff])<<32|
			uint64(b64pairs[y>>12])<<16|uint64(b64pairs[y&0xfff]))
		n += 8
	}
	for ; i+3 <= len(src); i += 3 {
		s := src[i : i+3 : i+3]
		x := uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2])
		p, q := b64pairs[x>>12], b64pairs[x&0xfff]
		d := dst[n : n+4 : n+4]
		d[0], d[1], d[2], d[3] = byte(p>>8), byte(p), byte(q>>8), byte(q)
		n += 4
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	switch len(src) - i {
	case 1:
		x := uint32(src[i]) << 16
		d := dst[n : n+4 : n+4]
		d[0], d[1], d[2], d[3] = alphabet[x>>18], alphabet[x>>12&0x3f], '=', '='
	case 2:
		x := uint32(src[i])<<16 | uint32(src[i+1])<<8
		d := dst[n : n+4 : n+4]
		d[0], d[1], d[2], d[3] = alphabet[x>>18], alphabet[x>>12&0x3f], alphabet[x>>6&0x3f], '='
	}
}

// b64pairs[v] is the two base64 characters of the twelve bits v, the first
// in the high byte.
var b64pairs = func() (t [4096]uint16) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for v := range t {
		t[v] = uint16(alphabet[v>>6])<<8 | uint16(alphabet[v&0x3f])
	}
	return t
}()
