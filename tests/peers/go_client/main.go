// Command go_client runs golang.org/x/crypto/ssh's client against one server until key
// exchange is done, so tests can compare what the real library offers and accepts with
// kexproxy's capability catalogue.
//
// Usage: go_client [-kex LIST] [-ciphers LIST] [-macs LIST] [-hostkeys LIST] HOST PORT
//
// Each LIST is comma-separated and becomes the ssh.Config / ssh.ClientConfig field of the
// same meaning (KeyExchanges, Ciphers, MACs, HostKeyAlgorithms) as a user would set it; an
// absent flag leaves the library's default. It exits 0 once the key exchange has completed
// (authentication was reached), printing "kex complete" and the host key type to stderr;
// otherwise it exits 1 with the library's own error text on stderr.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

func list(value string) []string {
	if value == "" {
		return nil
	}
	return strings.Split(value, ",")
}

func main() {
	kex := flag.String("kex", "", "ssh.Config.KeyExchanges, comma-separated")
	ciphers := flag.String("ciphers", "", "ssh.Config.Ciphers, comma-separated")
	macs := flag.String("macs", "", "ssh.Config.MACs, comma-separated")
	hostKeys := flag.String("hostkeys", "", "ssh.ClientConfig.HostKeyAlgorithms, comma-separated")
	timeout := flag.Duration("timeout", 15*time.Second, "connect and handshake timeout")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: go_client [flags] HOST PORT")
		os.Exit(2)
	}
	hostKeyType := ""
	config := &ssh.ClientConfig{
		User: "kexproxy-test",
		// No auth method: reaching authentication is all the test needs.
		Auth: []ssh.AuthMethod{},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			hostKeyType = key.Type()
			return nil
		},
		HostKeyAlgorithms: list(*hostKeys),
		Timeout:           *timeout,
	}
	config.KeyExchanges = list(*kex)
	config.Ciphers = list(*ciphers)
	config.MACs = list(*macs)

	address := net.JoinHostPort(flag.Arg(0), flag.Arg(1))
	client, err := ssh.Dial("tcp", address, config)
	if err == nil {
		client.Close()
	} else if hostKeyType == "" || !strings.Contains(err.Error(), "unable to authenticate") {
		// The host key callback runs only once the exchange hash is signed and verified.
		fmt.Fprintln(os.Stderr, err.Error())
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "kex complete; host key %s\n", hostKeyType)
}
