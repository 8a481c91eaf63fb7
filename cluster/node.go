package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
)

// Node is one sockhop server's membership in a cluster: it announces the
// server's sessions, keeps the directory of every server's sessions, fans
// out the cluster's broadcasts to the server's sessions, and serves the
// calls other servers route to them. Its methods are safe for concurrent
// use.
type Node struct {
	nc   *nats.Conn
	o    Options
	id   string
	subj subjects

	bmu     sync.Mutex // serialises Broadcast
	mu      sync.Mutex
	srv     *sockhop.Server
	joined  bool
	closed  bool
	local   map[uint64]*localSession
	seq     uint64 // of the last presence event published (or skipped)
	servers map[string]*remoteServer
	remote  int // sessions of all remote servers
	subs    []*nats.Subscription
	serving map[callKey]context.CancelFunc // calls of other servers running here
	tokens  atomic.Uint64                  // numbers our calls

	ctx      context.Context // ends with Close: cancels served calls
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the ticker, served calls, synchronisations
	inflight chan struct{}
	hooks    hookQueue
	c        counters
}

// subjects are the NATS subjects of one cluster.
type subjects struct{ base, bcast, presence string }

func (s subjects) call(server string) string { return s.base + "srv." + server + ".call" }
func (s subjects) snap(server string) string { return s.base + "srv." + server + ".snap" }

func (s subjects) cancel(server string) string { return s.base + "srv." + server + ".cancel" }

// New returns a Node of the cluster o.Name that will talk over nc, which
// the caller owns: Close leaves it open. nats.go's reconnection (on by
// default) is what lets the node recover from a NATS outage by itself.
func New(nc *nats.Conn, o Options) (*Node, error) {
	if nc == nil {
		return nil, fmt.Errorf("cluster: nil *nats.Conn; connect with nats.Connect first")
	}
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	base := "sockhop." + o.Name + "."
	n := &Node{
		nc:       nc,
		o:        o,
		id:       hex.EncodeToString(raw[:]),
		subj:     subjects{base: base, bcast: base + "bcast", presence: base + "presence"},
		local:    make(map[uint64]*localSession),
		servers:  make(map[string]*remoteServer),
		serving:  make(map[callKey]context.CancelFunc),
		inflight: make(chan struct{}, o.MaxInflight),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.hooks.init(&n.c.hookDropped)
	return n, nil
}

// ServerID returns the node's id in the cluster, random per Node: the
// first part of its sessions' ids.
func (n *Node) ServerID() string { return n.id }

// ServerOptions returns so with hooks that tell the node about sessions
// at once (start, handshake, binary mode, end); so's own hooks still run,
// after the node's. Build the server with them:
//
//	srv := sockhop.NewServer(node.ServerOptions(so))
//
// A server built without them is still followed, by comparing its session
// list every HeartbeatInterval.
func (n *Node) ServerOptions(so sockhop.ServerOptions) sockhop.ServerOptions {
	start, end, hs, bin := so.OnSessionStart, so.OnSessionEnd, so.OnHandshake, so.OnBinaryMode
	so.OnSessionStart = func(ctx context.Context, s *sockhop.Session) error {
		if start != nil {
			if err := start(ctx, s); err != nil {
				n.unregister(s)
				return err
			}
		}
		n.register(s)
		return nil
	}
	so.OnSessionEnd = func(s *sockhop.Session, err error) {
		n.unregister(s)
		if end != nil {
			end(s, err)
		}
	}
	so.OnHandshake = func(s *sockhop.Session, ok bool, err error) {
		n.refresh(s)
		if hs != nil {
			hs(s, ok, err)
		}
	}
	so.OnBinaryMode = func(s *sockhop.Session, rx, tx bool) {
		n.refresh(s)
		if bin != nil {
			bin(s, rx, tx)
		}
	}
	return so
}

// Join makes srv this node's server and joins the cluster: it subscribes
// to the cluster's subjects, announces srv's sessions and starts the
// heartbeat. A node joins once. NATS need not be reachable now: the node
// catches up when it is.
func (n *Node) Join(srv *sockhop.Server) error {
	if srv == nil {
		return fmt.Errorf("cluster: Join with a nil server")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return ErrClosed
	case n.joined:
		return fmt.Errorf("cluster: node %s has joined already", n.id)
	}
	n.srv = srv
	subs := []struct {
		subj string
		f    nats.MsgHandler
	}{
		{n.subj.bcast, n.onBroadcast},
		{n.subj.presence, n.onPresence},
		{n.subj.call(n.id), n.onCall},
		{n.subj.snap(n.id), n.onSnapshot},
		{n.subj.cancel(n.id), n.onCancel},
	}
	for _, s := range subs {
		sub, err := n.nc.Subscribe(s.subj, s.f)
		if err == nil {
			err = sub.SetPendingLimits(-1, n.o.MaxPendingBytes)
		}
		if err != nil {
			for _, done := range n.subs {
				_ = done.Unsubscribe()
			}
			n.subs = nil
			return fmt.Errorf("cluster: subscribing to %s: %w", s.subj, err)
		}
		n.subs = append(n.subs, sub)
	}
	n.joined = true
	for _, ls := range n.local {
		n.publishLocked(presenceMsg{Kind: kindJoin, Session: ls.snapshot()})
	}
	n.wg.Add(1)
	go n.tickLoop()
	return nil
}

// Close leaves the cluster: the other servers drop this one's sessions at
// once (when NATS is reachable; otherwise after DeadAfter), calls being
// served end, and Close returns when every goroutine of the node has
// ended. The server and the NATS connection stay open. Close is
// idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	subs := n.subs
	n.subs = nil
	if n.joined && n.nc.IsConnected() {
		n.publishRawLocked(presenceMsg{Kind: kindBye, Server: n.id})
	}
	n.mu.Unlock()
	n.cancel()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	if n.nc.IsConnected() {
		_ = n.nc.FlushTimeout(time.Second) // the bye on its way
	}
	n.wg.Wait()
	n.hooks.stop()
	return nil
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	st := Stats{Servers: 1 + len(n.servers), Sessions: len(n.local) + n.remote}
	var dropped uint64
	for _, s := range n.subs {
		if d, err := s.Dropped(); err == nil {
			dropped += uint64(d)
		}
	}
	n.mu.Unlock()
	st.Dropped = dropped
	st.Broadcasts = n.c.broadcasts.Load()
	st.BroadcastsIn = n.c.broadcastsIn.Load()
	st.Routed = n.c.routed.Load()
	st.Served = n.c.served.Load()
	st.Unavailable = n.c.unavailable.Load()
	st.UnknownSession = n.c.unknown.Load()
	st.RemoteErrors = n.c.remoteErrors.Load()
	st.Busy = n.c.busy.Load()
	st.BadMessages = n.c.bad.Load()
	st.Resyncs = n.c.resyncs.Load()
	st.ServersDropped = n.c.serversDropped.Load()
	st.DirectoryFull = n.c.dirFull.Load()
	st.HookEventsDropped = n.c.hookDropped.Load()
	return st
}

// ready checks that the node may act for its server now.
func (n *Node) ready() (*sockhop.Server, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return nil, ErrClosed
	case !n.joined:
		return nil, ErrNotJoined
	}
	return n.srv, nil
}

// unavailable is the error of a cross-server action while NATS is
// unreachable; it names the connection's state and last error.
func (n *Node) unavailable(what string) error {
	n.c.unavailable.Add(1)
	st := n.nc.Status()
	hint := ""
	if st == nats.RECONNECTING {
		hint = " (nats.go reconnects by itself; the cluster resumes then)"
	}
	if cause := n.nc.LastError(); cause != nil {
		return fmt.Errorf("%w: %s: NATS connection is %s%s: %w", ErrUnavailable, what, st, hint, cause)
	}
	return fmt.Errorf("%w: %s: NATS connection is %s%s", ErrUnavailable, what, st, hint)
}

func (n *Node) report(err error) {
	if f := n.o.OnError; f != nil {
		n.hooks.post(func() { f(err) })
	}
}

// tickLoop announces the node, follows the server's sessions and drops
// silent servers, every HeartbeatInterval.
func (n *Node) tickLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.o.HeartbeatInterval)
	defer t.Stop()
	n.heartbeat(kindHello)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.reconcile()
			n.heartbeat(kindHeartbeat)
			n.sweep(time.Now())
		}
	}
}
