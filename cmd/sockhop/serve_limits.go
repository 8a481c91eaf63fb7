package main

import (
	"flag"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// serveLimits are serve's flags for the bounds a server facing an
// untrusted network wants (README "Limits"): each maps to one option, and
// --harden sets the library's hardened profile, whose values the other
// flags override.
type serveLimits struct {
	harden        bool
	dropFailed    bool
	idle          time.Duration
	ping          time.Duration
	preHandshake  int
	perIP         int
	minRate       int
	messageGrace  time.Duration
	memoryBudget  int64
	maxHandlers   int
	maxConns      int
	protocolLimit int
}

func (l *serveLimits) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.harden, "harden", false, "the hardened profile for untrusted networks (drops 1.x peers, which never handshake): --drop-failed-handshake, --idle 2m with --ping 30s, --pre-handshake-max 65536, --max-per-ip 64, --min-rate 1024; the flags below override its values")
	fs.BoolVar(&l.dropFailed, "drop-failed-handshake", false, "close a connection whose handshake fails (every 1.x peer)")
	fs.DurationVar(&l.idle, "idle", 0, "close a connection on which nothing arrived for `DURATION` (0: never)")
	fs.DurationVar(&l.ping, "ping", 0, "ping every session every `DURATION`; four unanswered pings close it (0: no pings)")
	fs.IntVar(&l.preHandshake, "pre-handshake-max", 0, "largest message accepted before the handshake ended, in `BYTES` (0: as --max-message)")
	fs.IntVar(&l.perIP, "max-per-ip", 0, "connections accepted from one IP address at once (0: no limit)")
	fs.IntVar(&l.minRate, "min-rate", 0, "`BYTES` a second a message in progress must keep arriving at after --message-grace (0: no bound; slowloris peers)")
	fs.DurationVar(&l.messageGrace, "message-grace", 0, "how long a message may arrive at any speed before --min-rate applies (`DURATION`, default 10s)")
	fs.Int64Var(&l.memoryBudget, "memory-budget", 0, "`BYTES` the server may buffer for all peers together (default 256 MiB; -1: no budget)")
	fs.IntVar(&l.maxHandlers, "max-handlers", 0, "request handlers running at once across all sessions (default 1024; -1: no bound)")
	fs.IntVar(&l.maxConns, "max-connections", 0, "live sessions at once (default 65536)")
	fs.IntVar(&l.protocolLimit, "max-protocol-errors", 0, "protocol errors a peer may send before it is closed (default 100; -1: never)")
}

// apply sets the options the flags name; the library checks the values
// (NewServer reports a bad one at Listen).
func (l *serveLimits) apply(o *sockhop.ServerOptions) {
	o.Hardened = l.harden
	o.DropFailedHandshake = l.dropFailed
	o.IdleTimeout = l.idle
	o.PingInterval = l.ping
	o.MaxPreHandshakeSize = l.preHandshake
	o.MaxConnectionsPerIP = l.perIP
	o.MinReadRate = l.minRate
	o.MessageGrace = l.messageGrace
	o.MemoryBudget = l.memoryBudget
	o.MaxHandlers = l.maxHandlers
	o.MaxConnections = l.maxConns
	o.MaxProtocolErrors = l.protocolLimit
}
