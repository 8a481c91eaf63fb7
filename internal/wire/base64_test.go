package wire

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// checkBase64 compares decodeBase64 with the lenient decoder (the result
// for every input it accepts) and with encoding/base64 (which must accept
// whatever it accepts, without line breaks).
func checkBase64(t *testing.T, src []byte) {
	t.Helper()
	dst := make([]byte, len(src)/4*3)
	n, ok := decodeBase64(dst, src)
	if !ok {
		return // the lenient decoder takes it
	}
	if want := decodeBase64Lenient(string(src)); !bytes.Equal(dst[:n], want) {
		t.Fatalf("decodeBase64(%q) = %x, the lenient decoder gives %x", src, dst[:n], want)
	}
	std, err := base64.StdEncoding.DecodeString(string(src))
	if err != nil || !bytes.Equal(std, dst[:n]) {
		t.Fatalf("decodeBase64(%q) = %x, encoding/base64 gives %x (%v)", src, dst[:n], std, err)
	}
}

var base64Cases = []string{"", "QQ==", "QUI=", "QUJD", "QR==", "QUJ=", "AAAA", "////", "++++",
	"QUJDRA==", "QUJDREVG", "QUJDREVGRw==", "Q", "QQ", "QQ=", "QQ=A", "Q===", "====", "QUJD\nREVG",
	"QUJD REVG", "QUJ-", "QUJ_", "QUJDREVGRw=", "QUJDRE=G", "\x00\x00\x00\x00", "QUJD\r\n"}

func TestDecodeBase64(t *testing.T) {
	for _, c := range base64Cases {
		checkBase64(t, []byte(c))
	}
	// Every length around the two-group loop, every byte value.
	for n := range 40 {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(i*97 + n)
		}
		src := []byte(base64.StdEncoding.EncodeToString(raw))
		dst := make([]byte, len(src)/4*3)
		got, ok := decodeBase64(dst, src)
		if !ok || !bytes.Equal(dst[:got], raw) {
			t.Fatalf("%d bytes: decodeBase64 gave %x (ok %v), want %x", n, dst[:got], ok, raw)
		}
	}
}

func FuzzDecodeBase64(f *testing.F) {
	for _, c := range base64Cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		checkBase64(t, src)
		// Canonical text made from the input must always be accepted.
		enc := []byte(base64.StdEncoding.EncodeToString(src))
		dst := make([]byte, len(enc)/4*3)
		n, ok := decodeBase64(dst, enc)
		if !ok || !bytes.Equal(dst[:n], src) {
			t.Fatalf("canonical %q: got %x (ok %v), want %x", enc, dst[:n], ok, src)
		}
	})
}

func BenchmarkDecodeBase64(b *testing.B) {
	raw := bytes.Repeat([]byte{1, 2, 3, 250, 251, 252, 7}, 1<<20/7)
	src := []byte(base64.StdEncoding.EncodeToString(raw))
	dst := make([]byte, len(src)/4*3)
	b.Run("decodeBase64", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, ok := decodeBase64(dst, src); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding/base64", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, err := base64.StdEncoding.Decode(dst, src); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestEncodeBase64(t *testing.T) {
	for n := range 70 {
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = byte(i*151 + n*7)
		}
		want := base64.StdEncoding.EncodeToString(raw)
		dst := make([]byte, len(want))
		encodeBase64(dst, raw)
		if string(dst) != want {
			t.Fatalf("%d bytes: %q, want %q", n, dst, want)
		}
	}
}

func FuzzEncodeBase64(f *testing.F) {
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		want := base64.StdEncoding.EncodeToString(raw)
		dst := make([]byte, len(want))
		encodeBase64(dst, raw)
		if string(dst) != want {
			t.Fatalf("%x: %q, want %q", raw, dst, want)
		}
	})
}

func BenchmarkEncodeBase64(b *testing.B) {
	raw := bytes.Repeat([]byte{1, 2, 3, 250, 251, 252, 7}, 1<<20/7)
	dst := make([]byte, base64.StdEncoding.EncodedLen(len(raw)))
	b.Run("encodeBase64", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			encodeBase64(dst, raw)
		}
	})
	b.Run("encoding/base64", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			base64.StdEncoding.Encode(dst, raw)
		}
	})
}
