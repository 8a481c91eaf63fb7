package cluster

import (
	"fmt"
	"regexp"
	"time"
)

// Options configure a Node. Only Name is required.
type Options struct {
	// Name is the cluster's name: servers with the same name on the same
	// NATS system form one cluster. Letters, digits, '-' and '_' (it is a
	// NATS subject token).
	Name string
	// HeartbeatInterval is how often the node announces itself and checks
	// the others (default 1 s).
	HeartbeatInterval time.Duration
	// DeadAfter is how long a server may stay silent before it is dropped
	// from the directory with all its sessions (default 3 heartbeat
	// intervals). A dead server is gone from every directory within
	// DeadAfter + HeartbeatInterval of its last heartbeat.
	DeadAfter time.Duration
	// DefaultTimeout bounds a cross-server Request or Send whose ctx has
	// no deadline, and a directory synchronisation (default 30 s).
	DefaultTimeout time.Duration
	// MaxInflight bounds the calls from other servers this node serves at
	// once (default 256, as the core's MaxConcurrentRequests); more are
	// refused at once with a "busy" error.
	MaxInflight int
	// MaxSharedBytes bounds the JSON of one session's shared value
	// (default 4 KiB): it travels to every server in the cluster.
	MaxSharedBytes int
	// MaxDirectory bounds the sessions of other servers the directory
	// holds (default 1,048,576); sessions past it are not listed and are
	// counted in Stats.DirectoryFull.
	MaxDirectory int
	// MaxPendingBytes bounds what NATS holds for each of the node's
	// subscriptions while the node is busy (default 64 MiB, nats.go's
	// default); past it NATS drops messages, counted in Stats.Dropped.
	MaxPendingBytes int
	// OnJoin runs when a session joins, on any server of the cluster (this
	// one included), or when a server's sessions become visible again. It
	// runs on the node's hook goroutine, one event at a time, in order;
	// hooks must not block or call Close, which waits for them.
	OnJoin func(SessionInfo)
	// OnLeave runs when a session leaves, or its server left or was
	// dropped from the directory.
	OnLeave func(SessionInfo)
	// OnError reports problems that end no call: undecodable messages
	// from other servers, failed directory synchronisations.
	OnError func(error)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (o *Options) setDefaults() error {
	if !nameRE.MatchString(o.Name) {
		return fmt.Errorf("cluster: name %q: use 1 to 64 letters, digits, '-' or '_' (it becomes part of NATS subjects)", o.Name)
	}
	if o.HeartbeatInterval < 0 || o.DeadAfter < 0 || o.DefaultTimeout < 0 || o.MaxInflight < 0 ||
		o.MaxSharedBytes < 0 || o.MaxDirectory < 0 || o.MaxPendingBytes < 0 {
		return fmt.Errorf("cluster: negative option; use 0 for the default")
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = time.Second
	}
	if o.DeadAfter == 0 {
		o.DeadAfter = 3 * o.HeartbeatInterval
	}
	if o.DeadAfter <= o.HeartbeatInterval {
		return fmt.Errorf("cluster: DeadAfter (%s) must be longer than HeartbeatInterval (%s), or every server would be dropped between two heartbeats", o.DeadAfter, o.HeartbeatInterval)
	}
	if o.DefaultTimeout == 0 {
		o.DefaultTimeout = 30 * time.Second
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = 256
	}
	if o.MaxSharedBytes == 0 {
		o.MaxSharedBytes = 4096
	}
	if o.MaxDirectory == 0 {
		o.MaxDirectory = 1 << 20
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = 64 << 20
	}
	return nil
}
