package cluster

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sockhop/sockhop-go"
)

// SessionInfo describes one session of the cluster, as its server last
// announced it.
type SessionInfo struct {
	// ID is the session's cluster-wide id: its server's id, '-', and the
	// session's number on that server (Session.ID).
	ID string `json:"id"`
	// Server is the id of the server holding the session (Node.ServerID).
	Server string `json:"srv"`
	// RemoteAddr is the peer's address as that server sees it.
	RemoteAddr string `json:"addr"`
	// HandshakeDone, HandshakeOK, Binary and PeerVersion are the
	// session's sockhop.State: the handshake finished, it succeeded, the
	// session's transmit side is in binary mode (SendTyped works), and
	// the library version the peer announced.
	HandshakeDone bool   `json:"hs,omitempty"`
	HandshakeOK   bool   `json:"hsok,omitempty"`
	Binary        bool   `json:"bin,omitempty"`
	PeerVersion   string `json:"ver,omitempty"`
	// Shared is the JSON of the value the application shared for the
	// session (Node.Share), or nil.
	Shared json.RawMessage `json:"shared,omitempty"`
}

// Presence events (presenceMsg.Kind).
const (
	kindHeartbeat = "hb"
	kindJoin      = "join"
	kindLeave     = "leave"
	kindUpdate    = "update"
	kindBye       = "bye"
	kindHello     = "hello" // a server joined: the others heartbeat at once
)

// presenceMsg is what servers publish about themselves. Every join, leave
// and update carries the next number of its server's sequence, and each
// heartbeat the last one: a server that sees a gap, or a server it does
// not know, asks that server for its whole list (a snapshot).
type presenceMsg struct {
	Kind    string       `json:"k"`
	Server  string       `json:"srv"`
	Seq     uint64       `json:"seq"`
	Session *SessionInfo `json:"s,omitempty"`
}

// valid checks what the rest of the code relies on.
func (m *presenceMsg) valid() bool {
	switch m.Kind {
	case kindHeartbeat, kindBye, kindHello:
		return m.Server != ""
	case kindJoin, kindLeave, kindUpdate:
		return m.Server != "" && m.Session != nil && m.Session.Server == m.Server && strings.HasPrefix(m.Session.ID, m.Server+"-")
	}
	return false
}

// maxServers bounds the servers a directory follows: each costs a
// synchronisation and a map, and a publisher gone astray must not make
// them grow without bound.
const maxServers = 4096

// maxBuffered bounds the events of one server held while its snapshot is
// fetched; past it they are dropped and the next heartbeat shows the gap.
const maxBuffered = 4096

type localSession struct {
	s       *sockhop.Session
	info    SessionInfo
	seen    bool      // listed by the server's Sessions at least once
	created time.Time // registered
}

// snapshot refreshes the state part of the info from the session.
func (ls *localSession) snapshot() *SessionInfo {
	st := ls.s.State()
	ls.info.HandshakeDone, ls.info.HandshakeOK, ls.info.Binary, ls.info.PeerVersion = st.HandshakeDone, st.HandshakeOK, st.TxBinary, st.PeerVersion
	info := ls.info
	return &info
}

type remoteServer struct {
	seq      uint64
	sessions map[string]SessionInfo
	lastSeen time.Time
	synced   bool // a snapshot was applied
	syncing  bool
	buffered []presenceMsg
}

// ID returns the cluster-wide id of a session of this node's server.
func (n *Node) ID(s *sockhop.Session) string { return n.id + "-" + strconv.FormatUint(s.ID(), 10) }

// parseID splits a cluster-wide id.
func parseID(id string) (server string, num uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	num, err := strconv.ParseUint(id[i+1:], 10, 64)
	return id[:i], num, err == nil
}

func (n *Node) newLocal(s *sockhop.Session) *localSession {
	remote := "unix"
	if a := s.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		remote = a.String()
	}
	return &localSession{s: s, created: time.Now(), info: SessionInfo{ID: n.ID(s), Server: n.id, RemoteAddr: remote}}
}

// register adds a session of the server to the directory and announces it.
func (n *Node) register(s *sockhop.Session) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.registerLocked(s)
}

func (n *Node) registerLocked(s *sockhop.Session) *localSession {
	if ls := n.local[s.ID()]; ls != nil || n.closed {
		return ls
	}
	ls := n.newLocal(s)
	n.local[s.ID()] = ls
	info := ls.snapshot()
	n.publishLocked(presenceMsg{Kind: kindJoin, Session: info})
	n.onJoin(*info)
	return ls
}

func (n *Node) unregister(s *sockhop.Session) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unregisterLocked(s.ID())
}

func (n *Node) unregisterLocked(num uint64) {
	ls := n.local[num]
	if ls == nil {
		return
	}
	delete(n.local, num)
	n.publishLocked(presenceMsg{Kind: kindLeave, Session: &SessionInfo{ID: ls.info.ID, Server: n.id}})
	n.onLeave(ls.info)
}

// refresh announces a session's new state.
func (n *Node) refresh(s *sockhop.Session) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ls := n.local[s.ID()]; ls != nil {
		n.publishLocked(presenceMsg{Kind: kindUpdate, Session: ls.snapshot()})
	}
}

// Share sets the value the cluster's directory lists with the session
// (SessionInfo.Shared), e.g. a user name set after a login message. v is
// encoded as JSON, at most MaxSharedBytes; nil removes it.
func (n *Node) Share(s *sockhop.Session, v any) error {
	var raw json.RawMessage
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("cluster: shared value %T: %w", v, err)
		}
		if len(b) > n.o.MaxSharedBytes {
			return fmt.Errorf("cluster: shared value of %d bytes is over MaxSharedBytes (%d): every server keeps a copy; share less, or raise the limit", len(b), n.o.MaxSharedBytes)
		}
		raw = b
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.srv != nil && s.Server() != n.srv {
		return fmt.Errorf("cluster: session %d belongs to another server than this node's", s.ID())
	}
	if s.Err() != nil {
		return fmt.Errorf("cluster: session %d has ended: %w", s.ID(), s.Err())
	}
	ls := n.registerLocked(s)
	ls.info.Shared = raw
	n.publishLocked(presenceMsg{Kind: kindUpdate, Session: ls.snapshot()})
	return nil
}

// publishLocked numbers an event and publishes it. While NATS is down the
// event is skipped, not buffered: the number is taken anyway, so the
// other servers see the gap and fetch a snapshot when NATS returns.
func (n *Node) publishLocked(m presenceMsg) {
	n.seq++
	m.Seq, m.Server = n.seq, n.id
	if n.joined && !n.closed && n.nc.IsConnected() {
		n.publishRawLocked(m)
	}
}

func (n *Node) publishRawLocked(m presenceMsg) {
	b, _ := json.Marshal(m)
	_ = n.nc.Publish(n.subj.presence, b)
}

func (n *Node) heartbeat(kind string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed && n.nc.IsConnected() {
		n.publishRawLocked(presenceMsg{Kind: kind, Server: n.id, Seq: n.seq})
	}
}

// reconcile compares the server's sessions with those the node knows:
// sessions of a server built without ServerOptions are found this way,
// and so are state changes no hook reported.
func (n *Node) reconcile() {
	n.mu.Lock()
	srv := n.srv
	n.mu.Unlock()
	live := srv.Sessions()
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	listed := make(map[uint64]bool, len(live))
	for _, s := range live {
		listed[s.ID()] = true
		ls := n.local[s.ID()]
		if ls == nil {
			n.registerLocked(s)
			continue
		}
		ls.seen = true
		before := ls.info
		if after := ls.snapshot(); after.HandshakeDone != before.HandshakeDone || after.HandshakeOK != before.HandshakeOK || after.Binary != before.Binary {
			n.publishLocked(presenceMsg{Kind: kindUpdate, Session: after})
		}
	}
	for num, ls := range n.local {
		// A session registered by the start hook is listed a moment later;
		// one never listed was refused after the hook (server closing).
		if !listed[num] && (ls.seen || now.Sub(ls.created) > 2*n.o.HeartbeatInterval) {
			n.unregisterLocked(num)
		}
	}
}

// onPresence follows the other servers' events (NATS delivers one
// publisher's messages in order).
func (n *Node) onPresence(msg *nats.Msg) {
	var m presenceMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || !m.valid() {
		n.c.bad.Add(1)
		n.report(fmt.Errorf("cluster: undecodable presence message of %d bytes on %s", len(msg.Data), msg.Subject))
		return
	}
	if m.Server == n.id {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	rs := n.servers[m.Server]
	if m.Kind == kindBye {
		if rs != nil {
			n.dropLocked(m.Server, rs)
		}
		return
	}
	if rs == nil {
		if len(n.servers) >= maxServers {
			n.c.bad.Add(1)
			n.report(fmt.Errorf("cluster: server %s ignored: %d servers are known already; is something else publishing on %s?", m.Server, maxServers, n.subj.presence))
			return
		}
		rs = &remoteServer{sessions: make(map[string]SessionInfo)}
		n.servers[m.Server] = rs
	}
	rs.lastSeen = time.Now()
	switch {
	case m.Kind == kindHello:
		// Answer with a heartbeat now rather than at the next tick: the
		// newcomer learns the cluster in one round trip.
		n.publishRawLocked(presenceMsg{Kind: kindHeartbeat, Server: n.id, Seq: n.seq})
		fallthrough
	case m.Kind == kindHeartbeat:
		if !rs.syncing && (!rs.synced || rs.seq != m.Seq) {
			n.startSyncLocked(m.Server, rs)
		}
	case rs.syncing:
		if len(rs.buffered) < maxBuffered {
			rs.buffered = append(rs.buffered, m)
		}
	case rs.synced && m.Seq <= rs.seq:
		// Already in the snapshot.
	case rs.synced && m.Seq == rs.seq+1:
		n.applyLocked(rs, m)
	default:
		n.startSyncLocked(m.Server, rs)
	}
}

// applyLocked applies the next event of a server.
func (n *Node) applyLocked(rs *remoteServer, m presenceMsg) {
	rs.seq = m.Seq
	info := *m.Session
	old, had := rs.sessions[info.ID]
	switch m.Kind {
	case kindJoin, kindUpdate:
		if !had && n.remote >= n.o.MaxDirectory {
			n.c.dirFull.Add(1)
			return
		}
		rs.sessions[info.ID] = info
		if !had {
			n.remote++
			n.onJoin(info)
		}
	case kindLeave:
		if had {
			delete(rs.sessions, info.ID)
			n.remote--
			n.onLeave(old)
		}
	}
}

func (n *Node) startSyncLocked(id string, rs *remoteServer) {
	rs.syncing, rs.buffered = true, nil
	n.c.resyncs.Add(1)
	n.wg.Add(1)
	go n.sync(id)
}

// snapRequest and snapPage are a snapshot's pages: sessions in number
// order after After, as many as fit half of NATS's payload limit.
type snapRequest struct {
	After uint64 `json:"after"`
}

type snapPage struct {
	Seq      uint64        `json:"seq"`
	Sessions []SessionInfo `json:"sessions"`
	Next     uint64        `json:"next"` // 0: last page
}

// sync fetches a server's session list and replaces what the directory
// held for it; events that came meanwhile are applied after it.
func (n *Node) sync(id string) {
	defer n.wg.Done()
	sessions, seq, err := n.fetch(id)
	n.mu.Lock()
	defer n.mu.Unlock()
	rs := n.servers[id]
	if rs == nil || n.closed {
		return // dropped or bye meanwhile
	}
	rs.syncing = false
	if err != nil {
		rs.buffered = nil
		n.report(fmt.Errorf("cluster: fetching the sessions of server %s: %w (retried at its next heartbeat)", id, err))
		return
	}
	fresh := make(map[string]SessionInfo, len(sessions))
	for _, info := range sessions {
		if info.Server == id && strings.HasPrefix(info.ID, id+"-") {
			fresh[info.ID] = info
		}
	}
	for sid, old := range rs.sessions {
		if _, ok := fresh[sid]; !ok {
			delete(rs.sessions, sid)
			n.remote--
			n.onLeave(old)
		}
	}
	for sid, info := range fresh {
		if _, had := rs.sessions[sid]; had {
			rs.sessions[sid] = info
			continue
		}
		if n.remote >= n.o.MaxDirectory {
			n.c.dirFull.Add(1)
			continue
		}
		rs.sessions[sid] = info
		n.remote++
		n.onJoin(info)
	}
	rs.seq, rs.synced = seq, true
	for _, m := range rs.buffered {
		if m.Seq == rs.seq+1 {
			n.applyLocked(rs, m)
		}
	}
	rs.buffered = nil
}

func (n *Node) fetch(id string) ([]SessionInfo, uint64, error) {
	var err error
	for range 3 { // the list changed between pages: start again
		var all []SessionInfo
		var seq uint64
		var p snapPage
		req := snapRequest{}
		for page := 0; ; page++ {
			p, err = n.fetchPage(id, req)
			if err != nil {
				return nil, 0, err
			}
			if page == 0 {
				seq = p.Seq
			} else if p.Seq != seq {
				err = fmt.Errorf("its sessions changed while they were fetched")
				break
			}
			all = append(all, p.Sessions...)
			if p.Next == 0 {
				return all, seq, nil
			}
			req.After = p.Next
			if len(all) > n.o.MaxDirectory {
				return nil, 0, fmt.Errorf("it lists more than MaxDirectory (%d) sessions", n.o.MaxDirectory)
			}
		}
	}
	return nil, 0, err
}

func (n *Node) fetchPage(id string, req snapRequest) (snapPage, error) {
	var p snapPage
	b, _ := json.Marshal(req)
	ctx, cancel := contextWithTimeout(n.ctx, n.o.DeadAfter)
	defer cancel()
	msg, err := n.nc.RequestWithContext(ctx, n.subj.snap(id), b)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(msg.Data, &p); err != nil {
		n.c.bad.Add(1)
		return p, fmt.Errorf("undecodable snapshot page of %d bytes: %w", len(msg.Data), err)
	}
	return p, nil
}

// onSnapshot answers another server's request for a page of our sessions.
func (n *Node) onSnapshot(msg *nats.Msg) {
	var req snapRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		n.c.bad.Add(1)
		return
	}
	limit := int(n.nc.MaxPayload() / 2)
	n.mu.Lock()
	nums := make([]uint64, 0, len(n.local))
	for num := range n.local {
		if num > req.After {
			nums = append(nums, num)
		}
	}
	slices.Sort(nums)
	p := snapPage{Seq: n.seq, Sessions: []SessionInfo{}}
	size := 64
	for _, num := range nums {
		info := n.local[num].snapshot()
		b, _ := json.Marshal(info)
		if size+len(b) > limit && len(p.Sessions) > 0 {
			p.Next = p.Sessions[len(p.Sessions)-1].num()
			break
		}
		size += len(b) + 1
		p.Sessions = append(p.Sessions, *info)
	}
	n.mu.Unlock()
	b, _ := json.Marshal(p)
	_ = msg.Respond(b)
}

func (s *SessionInfo) num() uint64 {
	_, num, _ := parseID(s.ID)
	return num
}

// sweep drops the servers silent for longer than DeadAfter.
func (n *Node) sweep(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, rs := range n.servers {
		if now.Sub(rs.lastSeen) > n.o.DeadAfter {
			n.c.serversDropped.Add(1)
			n.dropLocked(id, rs)
		}
	}
}

func (n *Node) dropLocked(id string, rs *remoteServer) {
	delete(n.servers, id)
	n.remote -= len(rs.sessions)
	for _, info := range sortedInfos(rs.sessions) {
		n.onLeave(info)
	}
}

func sortedInfos(m map[string]SessionInfo) []SessionInfo {
	out := make([]SessionInfo, 0, len(m))
	for _, info := range m {
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return cmp.Compare(a.num(), b.num()) })
	return out
}

func (n *Node) onJoin(info SessionInfo) {
	if f := n.o.OnJoin; f != nil {
		n.hooks.post(func() { f(info) })
	}
}

func (n *Node) onLeave(info SessionInfo) {
	if f := n.o.OnLeave; f != nil {
		n.hooks.post(func() { f(info) })
	}
}

// Sessions lists the sessions of the whole cluster: this server's as they
// are now, the others' as last announced. They are ordered by server,
// then by number.
func (n *Node) Sessions() []SessionInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]SessionInfo, 0, len(n.local)+n.remote)
	for _, ls := range n.local {
		out = append(out, *ls.snapshot())
	}
	for _, rs := range n.servers {
		for _, info := range rs.sessions {
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		return cmp.Or(cmp.Compare(a.Server, b.Server), cmp.Compare(a.num(), b.num()))
	})
	return out
}

// Lookup returns the directory's entry for a session id.
func (n *Node) Lookup(id string) (SessionInfo, bool) {
	server, num, ok := parseID(id)
	if !ok {
		return SessionInfo{}, false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if server == n.id {
		if ls := n.local[num]; ls != nil {
			return *ls.snapshot(), true
		}
		return SessionInfo{}, false
	}
	if rs := n.servers[server]; rs != nil {
		info, ok := rs.sessions[id]
		return info, ok
	}
	return SessionInfo{}, false
}
