package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"

	sockhop "github.com/sockhop/sockhop-go"
)

// messageBytes returns the bytes a message carries: a Buffer, a typed
// buffer, or the object a Sockhop 1.x peer writes for a Buffer,
// {"type":"Buffer","data":[120,121]}, which the library hands over as JSON
// (PROTOCOL.md 3.4) but which a person means as bytes.
func messageBytes(m *sockhop.Message) ([]byte, bool) {
	if m.IsBytes() {
		return m.Bytes(), true
	}
	if m.Type != "Buffer" {
		return nil, false
	}
	var v1 struct {
		Type string `json:"type"`
		Data []int  `json:"data"`
	}
	if json.Unmarshal(m.JSON(), &v1) != nil || v1.Type != "Buffer" || v1.Data == nil {
		return nil, false
	}
	b := make([]byte, len(v1.Data))
	for i, n := range v1.Data {
		if n < 0 || n > 255 {
			return nil, false
		}
		b[i] = byte(n)
	}
	return b, true
}

// messageJSON returns a message's JSON data on one line, nil when the line
// had no "data" key.
func messageJSON(m *sockhop.Message) json.RawMessage {
	raw := m.JSON()
	if raw == nil {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		s, _ := json.Marshal(string(raw)) // cannot happen for a decoded line; keep it printable anyway
		return s
	}
	return b.Bytes()
}

// shown is a message as send prints a reply and serve reports a receive:
// {"type":"Widget","data":{...}} or {"type":"Tile","base64":"..."}.
type shown struct {
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data,omitempty"`
	Base64 *string         `json:"base64,omitempty"`
}

func show(m *sockhop.Message) shown {
	if b, ok := messageBytes(m); ok {
		s := base64.StdEncoding.EncodeToString(b)
		return shown{Type: m.Type, Base64: &s}
	}
	return shown{Type: m.Type, Data: messageJSON(m)}
}
