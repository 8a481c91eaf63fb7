// Package kit is what grpcbench, natsbench and rpcbench share: the
// payload and its decoding, the flags, the server child processes, the
// CPU and memory measurements, the timed passes and the result line, all
// with the meaning that bench/rawgo and `sockhop bench` give them.
package kit

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
)

// Wait bounds every wait for the other side: a control request, a pass's
// replies, a broadcast's deliveries. It is generous, since nothing waits
// for it unless a process is stuck.
const Wait = 2 * time.Minute

// Widget is the object every scenario carries:
// {"seq":i,"name":"widget","vals":[1,2,3]}.
type Widget struct {
	Seq  int    `json:"seq"`
	Name string `json:"name"`
	Vals []int  `json:"vals"`
}

// NewWidget is widget number seq.
func NewWidget(seq int) Widget { return Widget{Seq: seq, Name: "widget", Vals: []int{1, 2, 3}} }

// Ack is the reply to a widget request: {"seq":i}.
type Ack struct {
	Seq int `json:"seq"`
}

// Count is the server's count of one-way widgets since the last count.
type Count struct {
	Count int64 `json:"count"`
}

// Check reports whether the server counted the n widgets sent.
func (c Count) Check(n int) error {
	if c.Count != int64(n) {
		return fmt.Errorf("the server counted %d widgets, %d were sent", c.Count, n)
	}
	return nil
}

// Broadcast asks the server to broadcast N widgets; BroadcastDone is its
// reply once it has sent them all.
type Broadcast struct {
	N int `json:"n"`
}

// BroadcastDone tells how many receivers a broadcast went to, where the
// server knows it (-1 where it does not).
type BroadcastDone struct {
	Sessions int `json:"sessions"`
}

// RSS is a server's resident memory after a GC.
type RSS struct {
	KB int64 `json:"rss_kb"`
}

// Empty is an empty request or reply.
type Empty struct{}

// Decode is how receivers decode each object (-decode): into its struct
// or into a map[string]any, fully either way.
type Decode string

// The two decodings.
const (
	Struct Decode = "struct"
	Map    Decode = "map"
)

// NewWidgetTarget returns a fresh value to decode one widget into: a
// *Widget or a *map[string]any.
func (d Decode) NewWidgetTarget() any {
	if d == Map {
		return new(map[string]any)
	}
	return new(Widget)
}

// NewAckTarget returns a fresh value to decode one ack into: an *Ack or a
// *map[string]any.
func (d Decode) NewAckTarget() any {
	if d == Map {
		return new(map[string]any)
	}
	return new(Ack)
}

// Seq returns the "seq" of a widget or an ack decoded into a target of
// NewWidgetTarget or NewAckTarget.
func Seq(v any) (int, error) {
	switch v := v.(type) {
	case *Widget:
		return v.Seq, nil
	case *Ack:
		return v.Seq, nil
	case *map[string]any:
		if f, ok := (*v)["seq"].(float64); ok {
			return int(f), nil
		}
		return 0, errors.New(`no "seq" in the object`)
	}
	return 0, fmt.Errorf("cannot take a seq from %T", v)
}

// DecodeWidget decodes a widget's JSON fully and returns its seq.
func (d Decode) DecodeWidget(b []byte) (int, error) {
	v := d.NewWidgetTarget()
	if err := json.Unmarshal(b, v); err != nil {
		return 0, err
	}
	return Seq(v)
}

// DecodeAck decodes an ack's JSON fully and returns its seq.
func (d Decode) DecodeAck(b []byte) (int, error) {
	v := d.NewAckTarget()
	if err := json.Unmarshal(b, v); err != nil {
		return 0, err
	}
	return Seq(v)
}

// CheckAck checks that reply (decoded into a NewAckTarget) answers
// request seq.
func CheckAck(reply any, seq int) error {
	got, err := Seq(reply)
	if err != nil {
		return err
	}
	if got != seq {
		return fmt.Errorf("request %d was answered with seq %d", seq, got)
	}
	return nil
}

// Flags are the command line, with rawgo's names.
type Flags struct {
	Scenario  string
	Transport string
	Decode    Decode
	N         int
	Inflight  int
	Clients   int
	JSON      bool
	Server    bool // internal: run as the server child
}

// Scenarios' default work (-n), units and default -clients, as rawgo's.
var (
	defaultN       = map[string]int{"s1": 500_000, "s2seq": 20_000, "s2par": 200_000, "s4": 10_000, "s5": 1000}
	units          = map[string]string{"s1": "msg/s", "s2seq": "rt/s", "s2par": "rt/s", "s4": "deliv/s", "s5": "KB/conn"}
	defaultClients = map[string]int{"s1": 1, "s2seq": 1, "s2par": 1, "s4": 100, "s5": 1000}
)

func (f *Flags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.Scenario, "scenario", "s1", "s1|s2seq|s2par|s4|s5")
	fs.StringVar(&f.Transport, "transport", "tcp", "tcp (the only one)")
	fs.Func("decode", "struct|map: how receivers decode each object (default struct)", func(s string) error {
		if s != string(Struct) && s != string(Map) {
			return errors.New("struct or map")
		}
		f.Decode = Decode(s)
		return nil
	})
	f.Decode = Struct
	fs.IntVar(&f.N, "n", 0, "work of the timed pass (default per scenario: 500000, 20000, 200000, 10000; s5: -clients)")
	fs.IntVar(&f.Inflight, "inflight", 64, "requests in flight per connection for s2par")
	fs.IntVar(&f.Clients, "clients", 0, "connections (default 1; s4 100, s5 1000)")
	fs.BoolVar(&f.JSON, "json", false, "print the result as one JSON line")
	fs.BoolVar(&f.Server, "server", false, "run as the server child (internal)")
}

// finish checks the flags and fills in the defaults.
func (f *Flags) finish() error {
	if _, ok := defaultN[f.Scenario]; !ok {
		return fmt.Errorf("unknown -scenario %q (s1, s2seq, s2par, s4 or s5)", f.Scenario)
	}
	if f.Transport != "tcp" {
		return fmt.Errorf("-transport %q: only tcp", f.Transport)
	}
	if f.N < 0 || f.Clients < 0 || f.Inflight < 1 {
		return errors.New("-n and -clients must not be negative, -inflight must be positive")
	}
	if f.N == 0 {
		f.N = defaultN[f.Scenario]
	}
	if f.Clients == 0 {
		f.Clients = defaultClients[f.Scenario]
	}
	return nil
}

// Args are the flags a server child gets.
// InFlight is the requests in flight per connection: one for s2seq,
// -inflight for s2par.
func (f *Flags) InFlight() int {
	if f.Scenario == "s2par" {
		return f.Inflight
	}
	return 1
}

func (f *Flags) Args() []string {
	return []string{"-scenario", f.Scenario, "-decode", string(f.Decode)}
}

// WarmN is the size of the warm-up pass for a timed pass of n: a tenth.
func WarmN(n int) int { return max(1, n/10) }

// Result is one measurement; its JSON form is the line `sockhop bench
// --json` and rawgo print.
type Result struct {
	Scenario  string   `json:"scenario"`
	Mode      string   `json:"mode"`
	Transport string   `json:"transport"`
	Value     float64  `json:"value"`
	Unit      string   `json:"unit"`
	N         int      `json:"n"`
	Secs      float64  `json:"secs"`
	P50       *float64 `json:"p50_us,omitempty"`
	P99       *float64 `json:"p99_us,omitempty"`
	ClientCPU float64  `json:"client_cpu_us_per_unit"`
	ServerCPU float64  `json:"server_cpu_us_per_unit"`
}

// SetLatencies sets p50 and p99 from the latencies of the timed pass.
func (r *Result) SetLatencies(lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	lat = slices.Clone(lat)
	slices.Sort(lat)
	p50 := Round(float64(lat[len(lat)/2].Nanoseconds())/1e3, 1)
	p99 := Round(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, 1)
	r.P50, r.P99 = &p50, &p99
}

// Round rounds v to places decimals.
func Round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func (r *Result) print(f *Flags, name string) {
	if f.JSON {
		b, _ := json.Marshal(r)
		fmt.Printf("%s\n", b)
		return
	}
	fmt.Printf("%s %s over %s: %.1f %s (n %d in %.3f s; cpu/unit client %.3g µs, server %.3g µs)",
		name, r.Scenario, r.Transport, r.Value, r.Unit, r.N, r.Secs, r.ClientCPU, r.ServerCPU)
	if r.P50 != nil {
		fmt.Printf(", p50 %.0f µs, p99 %.0f µs", *r.P50, *r.P99)
	}
	fmt.Println()
}

// ErrUnsupported is returned (wrapped) by a command's client for a
// scenario its system cannot run; the command then exits with status 2.
var ErrUnsupported = errors.New("not supported")

// Command is one of the benchmark programs.
type Command struct {
	Mode  string // the result's "mode": grpc, nats, netrpc
	Name  string // for the readable result and errors
	Flags func(fs *flag.FlagSet)
	// Child runs a child process's role (the flags say which); Client
	// runs the bench and returns its result.
	Child  func(f *Flags) error
	Client func(f *Flags) (*Result, error)
	// IsChild tells whether the flags ask for a child role other than
	// -server (natsbench's -broker).
	IsChild func() bool
}

// Main parses the command line and runs the command: exit status 1 on an
// error, 2 on a bad command line or an unsupported scenario.
func (c Command) Main() {
	var f Flags
	fs := flag.NewFlagSet(c.Name, flag.ExitOnError)
	f.register(fs)
	if c.Flags != nil {
		c.Flags(fs)
	}
	_ = fs.Parse(os.Args[1:])
	if err := f.finish(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", c.Name, err)
		os.Exit(2)
	}
	if f.Server || (c.IsChild != nil && c.IsChild()) {
		if err := c.Child(&f); err != nil {
			fmt.Fprintf(os.Stderr, "%s child: %v\n", c.Name, err)
			os.Exit(1)
		}
		return
	}
	r, err := c.Client(&f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", c.Name, f.Scenario, err)
		if errors.Is(err, ErrUnsupported) {
			os.Exit(2)
		}
		os.Exit(1)
	}
	r.Scenario, r.Mode, r.Transport, r.Unit = f.Scenario, c.Mode, f.Transport, units[f.Scenario]
	r.print(&f, c.Name)
}

// DialMany opens k connections with dial and returns them with a function
// that closes them all; on a failure it closes those already open.
func DialMany[C any](k int, dial func() (C, error), closeOne func(C) error) ([]C, func(), error) {
	conns := make([]C, 0, k)
	closeAll := func() {
		for _, c := range conns {
			_ = closeOne(c)
		}
	}
	for range k {
		c, err := dial()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, c)
	}
	return conns, closeAll, nil
}
