package wire

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

// The shortcut for large Buffer lines must give exactly what the general
// path gives. The general path is reached by the same line with a space
// after its "{", which changes nothing for JSON but misses the shortcut.
func sameAsGeneralPath(t *testing.T, line []byte) {
	t.Helper()
	general := append([]byte("{ "), line[1:]...)
	got, err1 := parseLine(line, nil, nil)
	want, err2 := parseLine(general, nil, nil)
	if (err1 == nil) != (err2 == nil) {
		t.Fatalf("line %.80q...: error %v, general path %v", line, err1, err2)
	}
	if err1 != nil {
		return
	}
	if got.Kind != want.Kind || got.Type != want.Type || got.HasType != want.HasType || got.Bytes != want.Bytes ||
		got.ID != want.ID || !bytes.Equal(got.RawID, want.RawID) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("line %.80q...:\n got  %+v\n want %+v", line, brief(got), brief(want))
	}
}

func brief(m Message) Message {
	if len(m.Data) > 16 {
		m.Data = m.Data[:16]
	}
	return m
}

func TestBufferLineShortcut(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	std := base64.StdEncoding.EncodeToString(payload(3000))
	odd := base64.StdEncoding.EncodeToString(payload(3001)) // padded with "=="
	for _, tc := range []struct{ name, data, tail string }{
		{"plain", std, `"}`},
		{"padded", odd, `"}`},
		{"request", std, `","id":"3b2b0f54-4a51-4e2a-9a2b-0c7b0b5e8a11"}`},
		{"response", std, `","callback_id":"3b2b0f54-4a51-4e2a-9a2b-0c7b0b5e8a11"}`},
		{"numeric id", std, `","id":42}`},
		{"falsy id", std, `","id":0}`},
		{"other keys", std, `","x":{"y":[1,2]},"z":null}`},
		{"later data wins", std, `","data":"AAAA"}`},
		{"later empty data wins", std, `","data":""}`},
		{"later type wins", std, `","type":"Tile"}`},
		{"escaped key", std, `","d\u0061ta":"AAAA"}`},
		{"url-safe", strings.NewReplacer("+", "-", "/", "_").Replace(std), `"}`},
		{"unpadded", strings.TrimRight(odd, "="), `"}`},
		{"padding inside", std[:2000] + "=" + std[2000:], `"}`},
		{"not base64", std[:2000] + "*" + std[2000:], `"}`},
		{"escape in data", std[:2000] + `\n` + std[2000:], `"}`},
		{"escaped quote in data", std[:2000] + `\"` + std[2000:], `"}`},
		{"raw newline in data", std[:2000] + "\n" + std[2000:], `"}`},
		{"raw CR in data", std[:2000] + "\r" + std[2000:], `"}`},
		{"space in data", std[:2000] + " " + std[2000:], `"}`},
		{"unterminated", std, ``},
		{"bad tail", std, `",}`},
		{"garbage after", std, `"}x`},
		{"two objects", std, `"}{}`},
		{"short data", std[:100], `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sameAsGeneralPath(t, []byte(bufferLinePrefix+tc.data+tc.tail))
		})
	}
	// The shortcut does apply to the canonical form.
	if _, ok := parseBufferLine([]byte(bufferLinePrefix+std+`"}`), nil, nil); !ok {
		t.Fatal("a canonical Buffer line did not take the shortcut")
	}
}

func FuzzBufferLine(f *testing.F) {
	f.Add(bytes.Repeat([]byte{7}, 1500), `"}`)
	f.Add(bytes.Repeat([]byte{255}, 2000), `","id":"x"}`)
	f.Add([]byte("hello"), `","callback_id":1}`)
	f.Fuzz(func(t *testing.T, payload []byte, tail string) {
		if len(payload) < bufferLineMin {
			payload = append(payload, make([]byte, bufferLineMin)...)
		}
		sameAsGeneralPath(t, []byte(bufferLinePrefix+base64.StdEncoding.EncodeToString(payload)+tail))
	})
}
