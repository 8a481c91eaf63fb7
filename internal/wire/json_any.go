package wire

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// DecodeAny decodes JSON text into the values encoding/json gives an `any`
// (map[string]any, []any, string, float64, bool, nil), equal to what
// json.Unmarshal would store, in one pass and without reflection: about
// twice as fast for the small objects messages carry, and decoding into a
// map is what a receiver does that does not declare a struct (and what the
// Node side does with every message).
//
// It returns an error for anything it does not decode exactly as
// encoding/json would: invalid JSON, a number out of float64's range,
// nesting deeper than encoding/json allows. The caller then uses
// json.Unmarshal, for its error message; so the errors here are terse.
func DecodeAny(data []byte) (any, error) {
	d := anyDecoder{b: data}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.b) {
		return nil, errAnySyntax
	}
	return v, nil
}

var (
	errAnySyntax = errors.New("wire: not JSON DecodeAny handles")
	errAnyDepth  = errors.New("wire: JSON nested too deep")
)

// anyMaxDepth is encoding/json's nesting limit.
const anyMaxDepth = 10000

type anyDecoder struct {
	b []byte
	i int
}

func (d *anyDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *anyDecoder) value(depth int) (any, error) {
	if d.i >= len(d.b) {
		return nil, errAnySyntax
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.str()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, errAnySyntax
}

func (d *anyDecoder) literal(lit string) error {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return errAnySyntax
	}
	d.i += len(lit)
	return nil
}

func (d *anyDecoder) object(depth int) (any, error) {
	if depth > anyMaxDepth {
		return nil, errAnyDepth
	}
	d.i++ // {
	m := make(map[string]any)
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return m, nil
	}
	for {
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, errAnySyntax
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, errAnySyntax
		}
		d.i++
		d.space()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v // a repeated key: the last wins, as in encoding/json
		if done, err := d.next('}'); done || err != nil {
			return m, err
		}
	}
}

// next reads what follows a container's element: a comma (more follow) or
// closer (done).
func (d *anyDecoder) next(closer byte) (done bool, err error) {
	d.space()
	if d.i >= len(d.b) {
		return false, errAnySyntax
	}
	switch d.b[d.i] {
	case ',':
		d.i++
		d.space()
		return false, nil
	case closer:
		d.i++
		return true, nil
	}
	return false, errAnySyntax
}

func (d *anyDecoder) array(depth int) (any, error) {
	if depth > anyMaxDepth {
		return nil, errAnyDepth
	}
	d.i++        // [
	a := []any{} // encoding/json gives an empty, non-nil slice for []
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, nil
	}
	for {
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		if done, err := d.next(']'); done || err != nil {
			return a, err
		}
	}
}

// str decodes a string at d.i (which is '"'). Plain ASCII and valid UTF-8
// without escapes, the common case, is one scan and one copy.
func (d *anyDecoder) str() (string, error) {
	start := d.i + 1
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			d.i = j + 1
			return string(d.b[start:j]), nil
		case c == '\\' || c >= utf8.RuneSelf:
			return d.strSlow(start)
		case c < 0x20:
			return "", errAnySyntax
		}
	}
	return "", errAnySyntax
}

// strSlow decodes a string with escapes or non-ASCII bytes the way
// encoding/json does: invalid UTF-8 becomes U+FFFD byte by byte, a \u
// surrogate pair one rune, a lone surrogate U+FFFD.
func (d *anyDecoder) strSlow(start int) (string, error) {
	out := make([]byte, 0, 32)
	j := start
	for j < len(d.b) {
		c := d.b[j]
		switch {
		case c == '"':
			d.i = j + 1
			return string(out), nil
		case c < 0x20:
			return "", errAnySyntax
		case c == '\\':
			if j+1 >= len(d.b) {
				return "", errAnySyntax
			}
			switch e := d.b[j+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(d.b, j+2)
				if !ok {
					return "", errAnySyntax
				}
				j += 6
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(d.b, j+2); ok && j+1 < len(d.b) && d.b[j] == '\\' && d.b[j+1] == 'u' {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							j += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return "", errAnySyntax
			}
			j += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			j++
		default:
			r, size := utf8.DecodeRune(d.b[j:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, d.b[j:j+size]...)
			}
			j += size
		}
	}
	return "", errAnySyntax
}

// hex4 reads the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number decodes a JSON number as float64. Integers of up to 15 digits
// convert exactly by hand; the rest go through strconv.ParseFloat, as in
// encoding/json.
func (d *anyDecoder) number() (any, error) {
	start := d.i
	end := scanNumber(d.b, start)
	if end < 0 {
		return nil, errAnySyntax
	}
	d.i = end
	lit := d.b[start:end]
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) <= 15 && scanDigits(lit, 0) == len(lit) {
		var n int64
		for _, c := range lit {
			n = n*10 + int64(c-'0')
		}
		f := float64(n)
		if neg {
			f = -f // -0 too, as ParseFloat("-0") gives
		}
		return f, nil
	}
	// The string does not outlive the call: an error (out of range) is
	// dropped, the caller falls back to encoding/json.
	f, err := strconv.ParseFloat(unsafe.String(&d.b[start], end-start), 64)
	if err != nil {
		return nil, errAnySyntax
	}
	return f, nil
}
