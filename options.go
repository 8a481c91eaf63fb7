package sockhop

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sockhop/sockhop-go/internal/wire"
)

// Version is this library's version, sent as library_version in handshakes.
// The "+go" suffix lets a peer of this library recognise another one (and
// skip the proof of the switch to binary mode that protects Node
// receivers, PROTOCOL.md 5.5).
const Version = "0.1.0+go"

// Defaults: the Node reference's where it has one (PROTOCOL.md 8.1, 9.1),
// shared/RELIABILITY.md's limits otherwise.
const (
	DefaultAddr                  = "127.0.0.1:50000"
	DefaultConnectTimeout        = 5 * time.Second
	DefaultHandshakeTimeout      = 3 * time.Second
	DefaultMaxMessageSize        = wire.DefaultMaxMessage
	DefaultMessageGrace          = 10 * time.Second
	DefaultMaxQueueBytes         = 8 << 20
	DefaultMaxInboxBytes         = 8 << 20
	DefaultWriteTimeout          = 10 * time.Second
	DefaultMaxConcurrentRequests = 256
	DefaultMaxPendingRequests    = 10000
	DefaultMaxProtocolErrors     = 100
	DefaultReconnectInterval     = 2 * time.Second
	DefaultRehandshakeInterval   = 5 * time.Second
	DefaultMaxReconnectInterval  = 30 * time.Second
)

// ConnOptions are the settings every connection has, on either side. The
// zero value of each field means its documented default.
type ConnOptions struct {
	// HandshakeTimeout bounds the handshake (default 3 s). A peer that has
	// not completed it by then (any 1.x peer) leaves the connection in JSON
	// mode; it is not closed.
	HandshakeTimeout time.Duration
	// CompatibilityMode behaves like a Sockhop 1.x peer on the wire: no
	// handshake, JSON only (PROTOCOL.md 5.8).
	CompatibilityMode bool
	// NoBinary keeps this side from requesting or granting binary mode
	// (the reference's allow_binary_mode: false). Implied by
	// CompatibilityMode.
	NoBinary bool
	// Terminator ends JSON lines in both directions (default "\n").
	// RxTerminator, when set, is the one lines are split on instead, for the
	// reference's [rx, tx] pair.
	Terminator   string
	RxTerminator string
	// MaxMessageSize limits one received JSON line or frame payload (default
	// 4 MiB). The reference has no limit; a bigger message closes the
	// connection with ErrMessageTooLarge.
	MaxMessageSize int
	// MaxPreHandshakeSize, when set below MaxMessageSize, limits one
	// received message until the handshake has ended (default: the same as
	// MaxMessageSize). Hardening for servers that face untrusted networks,
	// next to DropFailedHandshake and IdleTimeout: it also cuts legitimate
	// peers that send large messages early, a 2.x client that calls
	// connect() rather than start(), and every 1.x peer during its first
	// HandshakeTimeout (1.x peers never handshake).
	MaxPreHandshakeSize int
	// MaxSendSize limits one message this side sends, counted as the peer's
	// MaxMessageSize counts it (the JSON line, or the frame's payload):
	// Send, Request, Reply and SendAll refuse a bigger one with
	// ErrMessageTooLarge before anything is written, instead of letting the
	// peer drop the connection. Default: MaxMessageSize, so that two
	// default peers agree; raise it on its own for peers with larger
	// limits (Node has none); negative: no limit.
	MaxSendSize int
	// MaxQueueBytes bounds the bytes queued for writing (default 8 MiB).
	// Send blocks while the queue is full until its ctx ends.
	MaxQueueBytes int
	// MaxInboxBytes bounds received messages waiting for their handlers
	// (default 8 MiB). Past it the reader stops reading until handlers
	// catch up, which pushes back on the peer through TCP.
	MaxInboxBytes int
	// WriteTimeout is how long one write to the socket may take before the
	// peer is cut off as a slow consumer (default 10 s).
	WriteTimeout time.Duration
	// MaxConcurrentRequests bounds request handlers running at once for one
	// connection (default 256); further requests wait their turn.
	MaxConcurrentRequests int
	// MaxPendingRequests bounds requests this side waits replies for on one
	// connection (default 10,000).
	MaxPendingRequests int
	// MaxProtocolErrors is how many protocol errors (undecodable messages,
	// replies with unknown callback ids, null lines) a peer may send before
	// its connection is closed (default 100; negative: never closed for
	// it). Their reports are rate limited per connection.
	MaxProtocolErrors int
	// TransitionProofTimeout bounds how long our first binary frames wait,
	// from the moment our transition line has been written, for a peer that
	// may be a Node process to prove that it reads binary frames. A Node receiver loses frames that arrive in the same read as
	// our transition line (PROTOCOL.md 14.1), and no fixed pause can rule
	// that out, so after the line we send binary pings and hold application
	// frames until one is answered: about one round trip. If no pong comes
	// within this time the frames are released anyway, with a warning and
	// Stats.UnprovenTransitions counted. Towards a peer that announced this
	// library there is no wait. Default: HandshakeTimeout; negative turns
	// the proof off (frames follow the line at once: only for peers known
	// to read it correctly).
	TransitionProofTimeout time.Duration
	// InlineHandlers runs every handler on the connection's reading
	// goroutine, as a hand-written read loop would: no goroutine wake-up per
	// message, and the replies to requests read together leave in one
	// write. The contract: while a handler runs, nothing else is read from
	// its connection, and requests run one at a time (MaxConcurrentRequests
	// does not apply). A handler must not wait for anything that needs its
	// connection to read: a Request on the same connection with the
	// handler's ctx fails at once with ErrInlineRequest. Off by default:
	// handlers run on their own goroutines, plain messages in order and
	// requests concurrently.
	InlineHandlers bool
	// PingInterval, when positive, pings the peer at that interval once the
	// connection is initialised; four pings in a row without an answer end
	// the connection (PROTOCOL.md 7.3). Default off, as in the reference.
	// SetPingInterval on a Client, Server or Session changes it at run
	// time.
	PingInterval time.Duration
	// IdleTimeout, when positive, closes a connection on which nothing at
	// all arrived for that long (default off). With PingInterval set, a
	// live peer's pongs keep it open; it bounds silent and slowloris peers
	// that never finish a message.
	IdleTimeout time.Duration
	// MinReadRate, when positive, bounds slow peers (slowloris): once a
	// message has been arriving for MessageGrace (default 10 s), it must
	// keep arriving at this many bytes a second on average, or the
	// connection is closed (ErrIdle). Time between messages is IdleTimeout's
	// business. Default off.
	MinReadRate  int
	MessageGrace time.Duration
	// DropFailedHandshake closes a connection whose handshake fails
	// instead of carrying on in JSON mode as the reference does. Set it
	// where every peer is a 2.x Sockhop or this library: it cuts off
	// connections that never handshake within HandshakeTimeout (silent
	// peers, port scanners), but also every 1.x peer.
	DropFailedHandshake bool
	// Logger receives the library's records (nil: discarded); at
	// LevelTrace, one per message sent and received (see Trace).
	Logger *slog.Logger
	// Trace, when set, is told of every message sent and received at the
	// protocol level (the reference's debug events).
	Trace *Trace
}

func (o *ConnOptions) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.TransitionProofTimeout, o.HandshakeTimeout)
	if o.MinReadRate > 0 {
		def(&o.MessageGrace, DefaultMessageGrace)
	}
	defInt(&o.MaxMessageSize, DefaultMaxMessageSize)
	defInt(&o.MaxPreHandshakeSize, o.MaxMessageSize)
	defInt(&o.MaxSendSize, o.MaxMessageSize)
	defInt(&o.MaxQueueBytes, DefaultMaxQueueBytes)
	defInt(&o.MaxInboxBytes, DefaultMaxInboxBytes)
	defInt(&o.MaxConcurrentRequests, DefaultMaxConcurrentRequests)
	defInt(&o.MaxPendingRequests, DefaultMaxPendingRequests)
	defInt(&o.MaxProtocolErrors, DefaultMaxProtocolErrors)
	if o.Terminator == "" {
		o.Terminator = "\n"
	}
	if o.RxTerminator == "" {
		o.RxTerminator = o.Terminator
	}
	if o.CompatibilityMode {
		o.NoBinary = true
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for name, v := range map[string]int64{
		"HandshakeTimeout": int64(o.HandshakeTimeout), "WriteTimeout": int64(o.WriteTimeout),
		"MaxMessageSize": int64(o.MaxMessageSize), "MaxPreHandshakeSize": int64(o.MaxPreHandshakeSize),
		"MaxQueueBytes": int64(o.MaxQueueBytes), "MaxInboxBytes": int64(o.MaxInboxBytes), "MaxConcurrentRequests": int64(o.MaxConcurrentRequests),
		"MaxPendingRequests": int64(o.MaxPendingRequests), "PingInterval": int64(o.PingInterval),
		"IdleTimeout": int64(o.IdleTimeout), "MinReadRate": int64(o.MinReadRate), "MessageGrace": int64(o.MessageGrace),
	} {
		if v < 0 {
			return newError(CodeBadOption, fmt.Sprintf("option %s is negative (%d); use 0 for the default", name, v), nil)
		}
	}
	if o.CompatibilityMode && o.DropFailedHandshake {
		return newError(CodeHandshakeCompatibilityMode, "DropFailedHandshake needs a handshake, and compatibility mode has none", nil)
	}
	if o.MaxPreHandshakeSize > o.MaxMessageSize {
		o.MaxPreHandshakeSize = o.MaxMessageSize
	}
	return nil
}
