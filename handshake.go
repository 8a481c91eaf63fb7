package sockhop

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// handshakeState follows one connection's handshake (PROTOCOL.md 5). It is
// tied to the connection: a timer that fires after the connection ended
// reports nothing (unlike the reference, 14.5).
type handshakeState struct {
	hsMu        sync.Mutex
	hsID        string // id of our own SockhopHandshake request
	hsGotReply  bool
	hsGotPeer   bool
	hsDone      bool
	hsOK        bool
	hsErr       error
	hsTimer     *time.Timer
	hsDoneCh    chan struct{} // closed when the handshake finished either way
	peerVersion string
	peerIsGo    bool
	rxBinary    atomic.Bool
}

func (h *handshakeState) init() { h.hsDoneCh = make(chan struct{}) }

// handshakeVersion is the library_version we announce. Tests that replay
// the reference's transcripts set it to "2.1.0" to compare bytes exactly.
var handshakeVersion = Version

// sendHandshake writes our handshake request and starts the timer.
func (c *conn) sendHandshake() {
	c.hsMu.Lock()
	c.hsID = wire.NewUUID()
	c.hsTimer = time.AfterFunc(c.o.HandshakeTimeout, func() {
		c.finishHandshake(false, ErrHandshakeTimeout)
	})
	id := c.hsID
	c.hsMu.Unlock()
	// Queued before the reader starts, which writes it before its first
	// read (byReader).
	c.sendControl(&wire.Message{
		Type: wire.TypeHandshake,
		Data: wire.MarshalHandshake(handshakeVersion, !c.o.NoBinary),
		Kind: wire.Request,
		ID:   id,
	}, true)
}

func (c *conn) isOwnHandshake(id string) bool {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	return c.hsID != "" && id == c.hsID
}

// onHandshakeReply handles the answer to our handshake: switch our transmit
// side to binary when both sides allow it (the reference trusts the reply
// alone, 14.5), then see whether the handshake is complete.
func (c *conn) onHandshakeReply(m *wire.Message) {
	c.hsMu.Lock()
	if c.hsDone || c.hsGotReply {
		// Late (after the timeout) or repeated: ignored, as the reference does.
		c.hsMu.Unlock()
		return
	}
	c.hsGotReply = true
	maybeNode := !c.peerIsGo
	c.hsMu.Unlock()

	var reply struct {
		AllowBinaryMode bool `json:"allow_binary_mode"`
	}
	if !m.Bytes && m.Data != nil {
		_ = json.Unmarshal(m.Data, &reply) // anything else means "no binary"
	}
	if reply.AllowBinaryMode && !c.o.NoBinary {
		if c.switchToBinary(maybeNode) && c.hooks.binary != nil {
			c.hooks.binary(false, true)
		}
	}
	c.checkHandshake()
}

// switchToBinary queues our transition line and flips the transmit mode in
// one critical section (5.5). Towards a peer that may be a Node receiver,
// the frames that follow wait for its proof that it reads them
// (transition.go). It runs on the reader, which writes the line before its
// next read.
func (c *conn) switchToBinary(peerMaybeNode bool) bool {
	barrier := peerMaybeNode && c.o.TransitionProofTimeout > 0
	if barrier {
		c.armProof() // before the line can be written
	}
	tp := take
	if c.cuttable {
		tp = leave
	}
	ok, p := c.q.switchToBinary(barrier, tp)
	if !ok {
		c.stopProof()
		return false
	}
	if c.trace != nil {
		line := &wire.Message{Type: wire.TypeTransition, Data: wire.TransitionData}
		c.traceSent(line, false, len(wire.AppendJSONLine(nil, line, []byte(c.o.Terminator))), true)
	}
	c.useToken(p.token, false)
	return true
}

// onPeerHandshake answers the peer's handshake, whenever it comes and in
// whatever mode (5.4). Compatibility mode drops it silently, as 1.x would
// not, but as the reference's compatibility mode does (5.8).
func (c *conn) onPeerHandshake(m *wire.Message) {
	if c.o.CompatibilityMode {
		return
	}
	var hs struct {
		ProtocolVersion   json.RawMessage `json:"protocol_version"`
		LibraryVersion    string          `json:"library_version"`
		RequestBinaryMode *bool           `json:"request_binary_mode"`
	}
	if !m.Bytes && len(m.Data) > 0 && m.Data[0] == '{' {
		_ = json.Unmarshal(m.Data, &hs) // a null or odd handshake is answered like an empty one
	}
	var reply []byte
	if hs.RequestBinaryMode == nil {
		reply = []byte("{}")
	} else {
		allow := *hs.RequestBinaryMode && !c.o.NoBinary
		reply, _ = json.Marshal(wire.HandshakeReply{AllowBinaryMode: &allow})
	}
	ans := &wire.Message{Type: "Object", Data: reply}
	if m.Kind == wire.Request {
		ans.Kind, ans.ID, ans.RawID = wire.Response, m.ID, m.RawID
		if c.q.isBinary() && len(m.ID) > wire.CallbackIDLen {
			c.reportError(newError(CodeSerializeFailed, "peer's handshake id is too long to answer in binary mode", nil))
			return
		}
	}
	c.sendControl(ans, true)

	c.hsMu.Lock()
	c.hsGotPeer = true
	c.peerVersion = hs.LibraryVersion
	c.peerIsGo = strings.HasSuffix(hs.LibraryVersion, "+go")
	c.hsMu.Unlock()
	c.checkHandshake()
}

func (c *conn) checkHandshake() {
	c.hsMu.Lock()
	ok := c.hsGotReply && c.hsGotPeer
	c.hsMu.Unlock()
	if ok {
		c.finishHandshake(true, nil)
	}
}

// finishHandshake records the outcome once, raises the receive limit from
// the pre-handshake one and tells the owner. compat: ok=false, err=nil.
func (c *conn) finishHandshake(ok bool, err error) {
	c.hsMu.Lock()
	if c.hsDone {
		c.hsMu.Unlock()
		return
	}
	c.hsDone, c.hsOK, c.hsErr = true, ok, err
	if c.hsTimer != nil {
		c.hsTimer.Stop()
	}
	c.hsMu.Unlock()
	// Start waits on hsDoneCh: close it last, so that the outcome has been
	// reported to the hook before Start returns (and closes the connection).
	defer close(c.hsDoneCh)
	// The reader may be waiting in the middle of a message with the
	// pre-handshake limit: raise it now, not at the next message. With
	// DropFailedHandshake a failed handshake keeps it: the connection is
	// being dropped (a peer that never handshook must not get the full
	// limit for what it sends meanwhile).
	if ok || !c.o.DropFailedHandshake {
		c.dec.SetLimit(c.o.MaxMessageSize)
	}
	c.pingsReady()
	if c.o.CompatibilityMode || c.isDone() {
		return
	}
	if c.hooks.handshake != nil {
		c.hooks.handshake(ok, err)
	}
	if !ok && c.o.DropFailedHandshake {
		c.close(newError(CodeHandshakeTimeout, "peer "+c.remote()+" did not complete the handshake; connection dropped (DropFailedHandshake)", err), false)
	} else if !ok {
		c.log.Info("sockhop: handshake failed; staying in JSON mode", "peer", c.remote(), "err", err.Error())
	}
}

func (c *conn) stopHandshakeTimer() {
	c.hsMu.Lock()
	if c.hsTimer != nil {
		c.hsTimer.Stop()
	}
	c.hsMu.Unlock()
}

// handshakeResult waits for the handshake outcome.
// handshaked reports whether the handshake has succeeded (the reference's
// "handshaked" of its disconnect event), without waiting.
func (c *conn) handshaked() bool {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	return c.hsDone && c.hsOK
}

func (c *conn) handshakeResult() (bool, error) {
	<-c.hsDoneCh
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	return c.hsOK, c.hsErr
}
