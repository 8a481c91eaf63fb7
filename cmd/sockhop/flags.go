package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	sockhop "github.com/sockhop/sockhop-go"
)

// usage is the help text of one command around its flag list.
type usage struct {
	synopsis string // one or more "sockhop CMD ..." lines
	about    string // what the command does
	examples string // one example per line, run as they are
}

// newFlagSet returns a flag set that reports errors to us instead of
// printing them itself: an error must end up as one line on stderr.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args, prints the usage for --help (then returns
// errHelpShown) and returns the positional arguments, at most maxPos.
func parseFlags(e *env, fs *flag.FlagSet, u usage, args []string, maxPos int) ([]string, error) {
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(e.stdout, fs, u)
		return nil, errHelpShown
	}
	if err != nil {
		if hint := durationHint(fs, args); hint != "" {
			return nil, usageErrorf("%s: %s", fs.Name(), hint)
		}
		return nil, usageErrorf("%s: %v (run 'sockhop %s --help')", fs.Name(), err, fs.Name())
	}
	if len(pos) > maxPos {
		return nil, usageErrorf("%s: unexpected argument %q (run 'sockhop %s --help')", fs.Name(), pos[maxPos], fs.Name())
	}
	return pos, nil
}

// durationHint explains a duration flag given a bare number (--timeout 5),
// which the flag package reports only as a parse error.
func durationHint(fs *flag.FlagSet, args []string) string {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || a == "--" {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if g, ok := f.Value.(flag.Getter); !ok {
			continue
		} else if _, isDur := g.Get().(time.Duration); !isDur {
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				continue
			}
			value = args[i+1]
		}
		if _, err := strconv.ParseFloat(value, 64); err == nil {
			return fmt.Sprintf("--%s %s: a duration needs a unit, e.g. %ss or %sms", name, value, value, value)
		}
	}
	return ""
}

// parseInterspersed lets flags follow positional arguments, as in
// `sockhop send '{"id":7}' --type Widget`, which the flag package alone
// would read as three positional arguments. "--" ends the flags, for data
// that starts with a dash: `sockhop send -- -5`.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printUsage writes a command's help; flags are shown with two dashes, the
// way the examples use them (the flag package accepts one or two).
func printUsage(w io.Writer, fs *flag.FlagSet, u usage) {
	fmt.Fprintf(w, "Usage:\n  %s\n\n%s\n", strings.ReplaceAll(u.synopsis, "\n", "\n  "), u.about)
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprint(w, "\nFlags:\n")
			first = false
		}
		name, help := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if name != "" {
			head += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			help += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, help)
	})
	fmt.Fprintf(w, "\nExamples:\n  %s\n", strings.ReplaceAll(u.examples, "\n", "\n  "))
}

// connFlags are the flags of every command that opens a connection.
type connFlags struct {
	addr       string
	unix       string
	compat     bool
	noBinary   bool
	maxMessage int
}

func (f *connFlags) register(fs *flag.FlagSet) {
	addrHelp := "the server's TCP address `HOST:PORT`; $SOCKHOP_ADDR sets the default"
	if fs.Name() == "serve" {
		addrHelp = "TCP address `HOST:PORT` to listen on (port 0 picks a free one); $SOCKHOP_ADDR sets the default"
	}
	fs.StringVar(&f.addr, "addr", defaultAddr(), addrHelp)
	fs.StringVar(&f.unix, "unix", "", "Unix socket `PATH`, instead of --addr")
	if fs.Name() == "serve" {
		fs.Lookup("unix").Usage = "listen on Unix socket `PATH`, instead of --addr"
	}
	fs.BoolVar(&f.compat, "compat", false, "compatibility mode: act like Sockhop 1.x (no handshake, JSON only)")
	fs.BoolVar(&f.noBinary, "no-binary", false, "never request or grant binary mode (JSON lines only)")
	peer := "the server"
	if fs.Name() == "serve" {
		peer = "a client"
	}
	fs.IntVar(&f.maxMessage, "max-message", sockhop.DefaultMaxMessageSize, "largest message accepted from "+peer+", in `BYTES` (a JSON line or a frame's data; a handshake line takes about 160); a bigger one closes the connection")
}

// defaultAddr is $SOCKHOP_ADDR when set, so that a shell session can name
// its server once.
func defaultAddr() string {
	if a := os.Getenv("SOCKHOP_ADDR"); a != "" {
		return a
	}
	return sockhop.DefaultAddr
}

// check rejects --addr together with --unix: one of them would be ignored.
func (f *connFlags) check(fs *flag.FlagSet) error {
	addrSet := false
	fs.Visit(func(fl *flag.Flag) { addrSet = addrSet || fl.Name == "addr" })
	if addrSet && f.unix != "" {
		return usageErrorf("%s: --addr and --unix exclude each other", fs.Name())
	}
	if f.maxMessage <= 0 {
		return usageErrorf("%s: --max-message must be a positive number of bytes", fs.Name())
	}
	return nil
}

func (f *connFlags) connOptions() sockhop.ConnOptions {
	// --max-message is about what the peer sends us; what we send is
	// bounded by what a default peer accepts, whatever it is.
	return sockhop.ConnOptions{CompatibilityMode: f.compat, NoBinary: f.noBinary, MaxMessageSize: f.maxMessage, MaxSendSize: sockhop.DefaultMaxMessageSize}
}

// where names the address for messages.
func (f *connFlags) where() string {
	if f.unix != "" {
		return f.unix
	}
	return f.addr
}

// serverTLSFlags turn TLS on for serve.
type serverTLSFlags struct{ cert, key, clientCA string }

func (f *serverTLSFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "serve TLS with this PEM certificate `FILE` (needs --tls-key)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	fs.StringVar(&f.clientCA, "tls-client-ca", "", "require client certificates signed by the PEM CA `FILE`")
}

// config returns nil without TLS flags.
func (f *serverTLSFlags) config() (*tls.Config, error) {
	if f.cert == "" && f.key == "" && f.clientCA == "" {
		return nil, nil
	}
	if f.cert == "" || f.key == "" {
		return nil, usageErrorf("serve: TLS needs both --tls-cert and --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.clientCA != "" {
		if cfg.ClientCAs, err = loadPool(f.clientCA); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientTLSFlags turn TLS on for send and sub.
type clientTLSFlags struct {
	cmd           string // names the command in usage errors
	on, insecure  bool
	ca, cert, key string
}

func (f *clientTLSFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.on, "tls", false, "connect with TLS, trusting the system's CAs (implied by the other --tls-* flags)")
	fs.StringVar(&f.ca, "tls-ca", "", "trust the server certificate's PEM CA `FILE`")
	fs.StringVar(&f.cert, "tls-cert", "", "present this PEM client certificate `FILE` (needs --tls-key)")
	fs.StringVar(&f.key, "tls-key", "", "PEM private key `FILE` of --tls-cert")
	fs.BoolVar(&f.insecure, "tls-insecure", false, "do not verify the server's certificate (for testing: anyone in the middle can read and change the traffic)")
}

func (f *clientTLSFlags) config() (*tls.Config, error) {
	if !f.on && !f.insecure && f.ca == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	return withClientCerts(f.cmd, &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure}, f.ca, f.cert, f.key)
}

// withClientCerts adds the CA file (trusted roots) and the client
// certificate, when given, to cfg; cmd names the command in usage errors.
func withClientCerts(cmd string, cfg *tls.Config, ca, cert, key string) (*tls.Config, error) {
	if ca != "" {
		pool, err := loadPool(ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, usageErrorf("%s: a client certificate needs both --tls-cert and --tls-key", cmd)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert/--tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
