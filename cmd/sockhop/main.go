// Command sockhop talks to Sockhop peers, Node.js or Go, from a shell.
//
//	sockhop demo     show every Sockhop feature working, in one process
//	sockhop serve    run a server that reports every event (and can echo)
//	sockhop send     send one message, or one per stdin line, to a server
//	sockhop sub      print what a server pushes, and answer its requests
//	sockhop sniff    relay between a client and a server, decoding both directions
//	sockhop replay   replay a recorded conversation against a server
//	sockhop probe    tell what listens at an address
//	sockhop bench    measure throughput, latency and memory
//
// Exit codes: 0 success, 1 a runtime failure, 2 a usage mistake. Errors are
// one line on stderr, starting with "sockhop: ", so scripts can show them
// as they are.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	sockhop "github.com/sockhop/sockhop-go"
)

// env is what a command may touch of the outside world, so that it can be
// pointed at buffers in tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// command is one entry of the command table.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands is a function rather than a variable because help refers back
// to the table.
func commands() []command {
	return []command{
		{"demo", "run a server and clients in one process and show each Sockhop feature working", runDemo},
		{"serve", "run a server that reports every event, one line each (JSON with --json)", runServe},
		{"send", "connect to a server and send DATA, or each line of stdin, as messages", runSend},
		{"sub", "connect to a server and print every message it pushes as JSON lines (--echo answers requests)", runSub},
		{"bench", "measure throughput, latency and memory against a server in a child process", runBench},
		{"sniff", "relay between a client and a server, printing every message of both directions decoded", runSniff},
		{"replay", "play the client side of a recorded conversation (sniff --record) against a server and compare its answers", runReplay},
		{"probe", "tell what listens at an address: Sockhop 2.x, 1.x or compatibility mode, or not Sockhop", runProbe},
		{"version", "print the version of sockhop and of the protocol it speaks", runVersion},
		{"help", "show help for sockhop or one of its commands", runHelp},
	}
}

func main() {
	os.Exit(run(os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}))
}

// run executes one command line and returns the exit code.
func run(args []string, e *env) int {
	if len(args) == 0 {
		names := make([]string, 0, len(commands()))
		for _, c := range commands() {
			names = append(names, c.name)
		}
		return fail(e, usageErrorf("no command given; run 'sockhop help' (commands: %s)", strings.Join(names, ", ")))
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = &c
			break
		}
	}
	if cmd == nil {
		return fail(e, usageErrorf("unknown command %q (run 'sockhop help')", name))
	}
	// SIGINT and SIGTERM cancel ctx: every command then closes what it
	// opened and returns, instead of dying with connections half-written.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fail(e, cmd.run(ctx, e, args[1:]))
}

// fail prints err as one line and maps it to the exit code.
func fail(e *env, err error) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return 0
	}
	fmt.Fprintln(e.stderr, oneLine(err))
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// oneLine formats err as "sockhop: ..." on a single line. The library's
// errors already start with "sockhop: "; wrapping them would repeat it.
func oneLine(err error) string {
	msg := strings.ReplaceAll(err.Error(), "sockhop: ", "")
	msg = strings.Join(strings.Fields(msg), " ")
	return "sockhop: " + terminalSafe(msg)
}

// usageError is a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// errHelpShown ends a command whose --help was printed (exit code 0).
var errHelpShown = errors.New("help shown")

func printMainUsage(w io.Writer) {
	fmt.Fprint(w, `sockhop speaks the Sockhop protocol (Node.js IPC) with Node or Go peers.

Usage:
  sockhop COMMAND [flags] [args]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'sockhop help COMMAND' or 'sockhop COMMAND --help' for a command's flags.

Examples:
  sockhop demo
  sockhop serve --echo
  sockhop send '{"id":7}' --type Widget
`)
}

func runHelp(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] == "help" {
		printMainUsage(e.stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, []string{"--help"})
		}
	}
	return usageErrorf("unknown command %q (run 'sockhop help')", args[0])
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet("version")
	u := usage{
		synopsis: "sockhop version [--json]",
		about:    "Prints the library version (sent to peers in the handshake) and the Go version.",
		examples: "sockhop version\nsockhop --version",
	}
	jsonOut := fs.Bool("json", false, `one JSON object: {"version":...,"protocol":2,"go":...}`)
	if _, err := parseFlags(e, fs, u, args, 0); err != nil {
		return err
	}
	if *jsonOut {
		b, _ := json.Marshal(map[string]any{"version": sockhop.Version, "protocol": 2, "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH})
		fmt.Fprintf(e.stdout, "%s\n", b)
		return nil
	}
	fmt.Fprintf(e.stdout, "sockhop %s (protocol 2, compatible with Sockhop 1.x; %s %s/%s)\n",
		sockhop.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
