package wire

import (
	"strings"
	"testing"
)

// TestSentSize: the size a receiver's limit sees is exactly the line
// without its terminator, or the frame's payload, for every kind of
// message.
func TestSentSize(t *testing.T) {
	long := strings.Repeat("x", 300)
	msgs := []Message{
		{Type: "Object", Data: []byte(`{"a":1}`)},
		{Type: "Buffer", Data: []byte{1, 2, 3, 4, 5}, Bytes: true},
		{Type: "Tile", Data: make([]byte, 1000), Bytes: true},
		{Type: "String", Data: []byte(`"q\"uote\u0001"`), Kind: Request, ID: "0f8e9c1a-0000-4000-8000-000000000000"},
		{Type: "Number", Data: []byte(`42`), Kind: Response, ID: "id-with-\"quote\""},
		{Type: "Number", Data: []byte(`42`), Kind: Response, RawID: []byte(`[1,2]`)},
		{Type: "Évé\n\x1b" + long, Data: []byte(`null`)},
		{Type: "Empty"},
	}
	for _, m := range msgs {
		line := AppendJSONLine(nil, &m, []byte("\r\n"))
		if got, want := SentSize(&m, false), len(line)-2; got != want {
			t.Errorf("%.20q JSON: SentSize %d, line %d: %s", m.Type, got, want, line)
		}
		if CheckFrame(&m) != nil {
			continue
		}
		frame, err := AppendFrame(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := SentSize(&m, true), len(frame)-frameHeaderLen; got != want {
			t.Errorf("%.20q binary: SentSize %d, payload %d", m.Type, got, want)
		}
	}
}
