package sockhop

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashServerEnv makes the test binary run runCrashServer instead of the
// tests: TestCrashRestart needs a real process to SIGKILL.
const crashServerEnv = "SOCKHOP_CRASH_SERVER"

// runCrashServer serves until killed. It counts the numbered messages each
// session received and answers a "Sync" request with that count and their
// sum, so the client can tell loss from duplication; "Hang" requests are
// never answered.
func runCrashServer(addr string) int {
	type tally struct{ n, sum int }
	o := ServerOptions{OnSessionStart: func(ctx context.Context, s *Session) error { s.SetValue(&tally{}); return nil }}
	if strings.HasPrefix(addr, "/") {
		o.Path = addr
	} else {
		o.Addr = addr
	}
	srv := NewServer(o)
	srv.Handle("Number", func(ctx context.Context, m *Message) error {
		var i int
		if err := m.Decode(&i); err != nil {
			return err
		}
		t := m.Session().Value().(*tally)
		t.n++
		t.sum += i
		return nil
	})
	srv.Handle("Sync", func(ctx context.Context, m *Message) error {
		t := m.Session().Value().(*tally)
		return m.Reply(ctx, Named{Type: "Tally", Data: []int{t.n, t.sum}})
	})
	srv.Handle("Hang", func(ctx context.Context, m *Message) error { return nil })
	if err := srv.Listen(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	srv.Close()
	return 0
}

// crashServer is the subprocess running runCrashServer.
type crashServer struct {
	t    *testing.T
	addr string
	cmd  *exec.Cmd
}

func (s *crashServer) start() {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashServerEnv+"="+s.addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	noErr(s.t, err)
	noErr(s.t, cmd.Start())
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ready <- sc.Scan() && sc.Text() == "listening"
		for sc.Scan() {
		}
	}()
	if !recv(s.t, ready, "the crash server listening") {
		s.t.Fatal("crash server did not start")
	}
	s.cmd = cmd
}

func (s *crashServer) kill() {
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.cmd.Wait()
		s.cmd = nil
	}
}

// TestCrashRestart (R9): the server process is killed with SIGKILL and
// restarted three times while a client with AutoReconnect works against
// it. After each new handshake no message is lost or duplicated; requests
// pending at the crash fail with ErrDisconnected within a second; sends
// while the server is down fail fast instead of hanging.
func TestCrashRestart(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := &crashServer{t: t}
			if network == "tcp" {
				srv.addr = freeAddr(t)
			} else {
				srv.addr = shortSocketPath(t)
			}
			srv.start()
			defer srv.kill()
			hs := make(chan bool, 8)
			o := ClientOptions{ConnOptions: fastOpts(), AutoReconnect: true,
				ReconnectInterval: 50 * time.Millisecond, MaxReconnectInterval: 100 * time.Millisecond,
				OnHandshake: func(c *Client, ok bool, err error) { hs <- ok }}
			if network == "tcp" {
				o.Addr = srv.addr
			} else {
				o.Path = srv.addr
			}
			c := NewClient(o)
			defer c.Close()
			noErr(t, c.Start(testCtx(t)))
			recv(t, hs, "first handshake")
			const perRound = 500
			for round := range 4 {
				if round > 0 {
					restarted := time.Now()
					srv.start()
					equal(t, "handshake after restart", recv(t, hs, "handshake after restart"), true)
					if d := time.Since(restarted); d > o.MaxReconnectInterval+time.Second {
						t.Fatalf("reconnected %s after the restart", d)
					}
				}
				ctx := testCtx(t)
				sum := 0
				for i := range perRound {
					noErr(t, c.Send(ctx, round*perRound+i))
					sum += round*perRound + i
				}
				r, err := c.Request(ctx, Named{Type: "Sync", Data: nil})
				noErr(t, err)
				var tally []int
				noErr(t, r.Decode(&tally))
				if tally[0] != perRound || tally[1] != sum {
					t.Fatalf("round %d: server counted %d messages summing to %d, want %d summing to %d", round, tally[0], tally[1], perRound, sum)
				}
				if round == 3 {
					break
				}
				hung := make(chan error, 1)
				go func() {
					_, err := c.Request(testCtx(t), Named{Type: "Hang", Data: nil})
					hung <- err
				}()
				eventually(t, "hang request pending", func() bool { return c.Stats().RequestsPending == 1 })
				srv.kill()
				killed := time.Now()
				errorIs(t, recv(t, hung, "the pending request failing"), ErrDisconnected)
				if d := time.Since(killed); d > time.Second {
					t.Fatalf("pending request failed %s after the kill", d)
				}
				eventually(t, "disconnected", func() bool { return !c.State().Connected })
				sendCtx, cancel := context.WithTimeout(testCtx(t), time.Second)
				errorIs(t, c.Send(sendCtx, -1), ErrNotConnected)
				cancel()
			}
			st := c.Stats()
			equal(t, "reconnects", st.Reconnects, 3)
			t.Logf("%s: 3 crashes, %d reconnects, %d requests failed by disconnect", network, st.Reconnects, st.RequestsFailedByDisconnect)
		})
	}
}

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr(t *testing.T) string {
	srv := NewServer(ServerOptions{Addr: "127.0.0.1:0"})
	noErr(t, srv.Listen())
	addr := srv.Addr().String()
	srv.Close()
	return addr
}
