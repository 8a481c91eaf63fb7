package wire

import (
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
)

// anyCases are inputs where DecodeAny could differ from encoding/json.
var anyCases = []string{
	`{"seq":1,"name":"widget","vals":[1,2,3]}`,
	`{}`, `[]`, `[[],{}]`, `null`, `true`, `false`, `0`, `-0`, `-0.0`, `1e3`, `1E-3`, `-12.5e+2`,
	`123456789012345`, `1234567890123456`, `12345678901234567890`, `9007199254740993`,
	`1e308`, `1e309`, `-1e400`, `4.9e-324`, `1e-400`,
	`"plain"`, `"tab\tin"`, `"esc \" \\ \/ \b \f \n \r \t"`, `"\u00e9\u2028\uD83D\uDE00"`,
	`"\ud800"`, `"\ud800\u0041"`, `"\udc00\ud800"`, `"\uD83D\uDE00\uDE00"`, "\"bad \xff utf8 \xc3\"",
	"\"ok é 日本\"", `{"a":1,"a":2}`, `{"":""}`, `{"k\u0000":"v"}`, ` {"a" : [ 1 , 2 ] } `,
	// Invalid: DecodeAny must refuse them too.
	``, ` `, `{`, `}`, `[1,]`, `{"a":1,}`, `{"a"}`, `{a:1}`, `01`, `-`, `1.`, `.5`, `+1`, `1e`, `tru`, `nul`,
	`"unterminated`, "\"ctl\x01\"", `"\x"`, `"\u12"`, `"\uZZZZ"`, `[1 2]`, `{"a":1 "b":2}`, `1 2`, `[`, `[1`,
	"\v1", `{"a":[}`,
}

// checkAny compares DecodeAny with json.Unmarshal into an any.
func checkAny(t *testing.T, in []byte) {
	t.Helper()
	var want any
	stdErr := json.Unmarshal(in, &want)
	got, err := DecodeAny(in)
	switch {
	case stdErr != nil && err == nil:
		t.Fatalf("DecodeAny(%q) = %#v, encoding/json refuses it: %v", in, got, stdErr)
	case stdErr == nil && err != nil:
		t.Fatalf("DecodeAny(%q) failed (%v), encoding/json decodes it to %#v", in, err, want)
	case stdErr == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("DecodeAny(%q) = %#v, encoding/json gives %#v", in, got, want)
	case stdErr == nil:
		if f, ok := want.(float64); ok && math.Signbit(f) != math.Signbit(got.(float64)) {
			t.Fatalf("DecodeAny(%q) = %v, encoding/json gives %v (sign of zero)", in, got, want)
		}
	}
}

func TestDecodeAnyMatchesEncodingJSON(t *testing.T) {
	for _, c := range anyCases {
		checkAny(t, []byte(c))
	}
	// Nesting at and past encoding/json's limit.
	for _, n := range []int{anyMaxDepth, anyMaxDepth + 1} {
		in := strings.Repeat("[", n) + strings.Repeat("]", n)
		var want any
		stdErr := json.Unmarshal([]byte(in), &want)
		_, err := DecodeAny([]byte(in))
		if (stdErr == nil) != (err == nil) {
			t.Errorf("depth %d: DecodeAny error %v, encoding/json error %v", n, err, stdErr)
		}
	}
}

func FuzzDecodeAny(f *testing.F) {
	for _, c := range anyCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAny(t, in)
	})
}

func BenchmarkDecodeAny(b *testing.B) {
	in := []byte(`{"seq":12345,"name":"widget","vals":[1,2,3]}`)
	b.Run("DecodeAny", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeAny(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v map[string]any
			if err := json.Unmarshal(in, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
