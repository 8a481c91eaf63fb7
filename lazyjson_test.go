package sockhop

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
)

// JSON data in binary frames is validated where it is used (Message.Decode,
// Message.JSON), not twice: a frame whose data is not JSON reaches its
// handler, whose Decode says what is wrong, and is still counted and
// reported as the peer's undecodable message, MaxProtocolErrors included.
func TestInvalidJSONFrameValidatedWhereUsed(t *testing.T) {
	log := &errLog{}
	ended := make(chan error, 1)
	o := ServerOptions{ConnOptions: fastOpts(), OnError: log.add,
		OnSessionEnd: func(_ *Session, err error) { ended <- err }}
	o.MaxProtocolErrors = 3
	srv := startServer(t, transports[0], o)
	type seen struct {
		json    []byte
		decoded error
	}
	got := make(chan seen, 16)
	srv.Handle("T", func(ctx context.Context, m *Message) error {
		var v struct{ A int }
		err := m.Decode(&v)
		got <- seen{m.JSON(), err}
		return nil
	})
	raw, err := net.Dial("tcp", srv.Addr().String())
	noErr(t, err)
	defer raw.Close()
	frame := func(data string) []byte {
		p := append([]byte{1}, 'T')
		p = binary.LittleEndian.AppendUint32(p, uint32(len(data)))
		p = append(p, data...)
		return append(append(binary.LittleEndian.AppendUint32(nil, uint32(len(p))), 10), p...)
	}
	stream := []byte(transitionLine)
	stream = append(stream, frame(`{"A":1}`)...)
	stream = append(stream, frame(`{"A":`)...)
	_, err = raw.Write(stream)
	noErr(t, err)

	good := recv(t, got, "the valid frame")
	noErr(t, good.decoded)
	equal(t, "valid JSON", string(good.json), `{"A":1}`)
	bad := recv(t, got, "the invalid frame")
	if !errors.Is(bad.decoded, &Error{Code: CodeBadData}) {
		t.Fatalf("Decode of invalid data: %v", bad.decoded)
	}
	if bad.json != nil {
		t.Fatalf("JSON of invalid data: %q, want nil", bad.json)
	}
	eventually(t, "the report", func() bool { return log.has(CodeDeserializeFailed) })
	equal(t, "protocol errors", srv.Sessions()[0].Stats().ProtocolErrors, uint64(1))

	// Past MaxProtocolErrors the connection is closed, as for frames the
	// reader itself could not decode.
	for range 3 {
		_, err = raw.Write(frame(`nope`))
		noErr(t, err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, &Error{Code: CodeProtocol}) {
			t.Fatalf("session ended with %v, want ERR_PROTOCOL", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session outlived MaxProtocolErrors invalid frames")
	}
}
