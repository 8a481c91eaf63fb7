package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidMatchesEncodingJSON(t *testing.T) {
	cases := append([]string{}, anyCases...)
	for _, n := range []int{63, 64, 65, anyMaxDepth, anyMaxDepth + 1} {
		cases = append(cases, strings.Repeat("[", n)+strings.Repeat("]", n),
			strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n),
			strings.Repeat("[", n)+strings.Repeat("]", n-1))
	}
	for _, c := range cases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range anyCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := Valid(in), json.Valid(in); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", in, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	in := []byte(`{"seq":12345,"name":"widget","vals":[1,2,3]}`)
	b.Run("Valid", func(b *testing.B) {
		for b.Loop() {
			Valid(in)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.Valid(in)
		}
	})
}
