package sockhop

import (
	"errors"
	"fmt"
	"syscall"
)

// impostorEnv makes the test binary, re-executed as another user by
// TestUnixOtherUserRefused, try to Listen on the path it names and print
// the outcome instead of running the tests.
const impostorEnv = "SOCKHOP_UNIX_IMPOSTOR"

// nobody is the user the impostor runs as when the tests run as root.
const nobody = 65534

// runImpostor tries to listen on path and prints one line: "listening", or
// "refused eacces=<bool> eaddrinuse=<bool>: <error>".
func runImpostor(path string) int {
	srv := NewServer(ServerOptions{Path: path})
	defer srv.Close()
	err := srv.Listen()
	if err == nil {
		fmt.Println("listening")
		return 0
	}
	fmt.Printf("refused eacces=%t eaddrinuse=%t: %v\n", errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EADDRINUSE), err)
	return 0
}
