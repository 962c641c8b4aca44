package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/ringfence/ringfence/bench/internal/benchenv"
)

// peer is this program re-run in the peer namespace (the far side of the
// host's uplink): the victim's TCP sink, which answers each connection
// with what arrived; a sink for the neighbour's TCP flood; a UDP echo for
// the victim's round trips; a sink for the neighbour's UDP flood. Twice a
// second it prints what the floods delivered, by sender ("counts
// {"10.77.0.12": bytes}"): what got through the uplink, as opposed to
// what the neighbour offered.
func peer() {
	var mu sync.Mutex
	got := map[string]int64{}
	count := func(ip string, n int) {
		mu.Lock()
		got[ip] += int64(n)
		mu.Unlock()
	}
	tcp := func(port string, serve func(net.Conn)) {
		ln, err := net.Listen("tcp4", ":"+port)
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serve(c)
			}
		}()
	}
	udp := func(port string) *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: atoi(port)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		return c
	}
	tcp("5001", countAndAnswer)
	tcp("5002", func(c net.Conn) {
		defer c.Close()
		ip := c.RemoteAddr().(*net.TCPAddr).IP.String()
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			count(ip, n)
			if err != nil {
				return
			}
		}
	})
	echo := udp("5003")
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDP(buf)
			if err != nil {
				return
			}
			echo.WriteToUDP(buf[:n], from)
		}
	}()
	discard := udp("5004")
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := discard.ReadFromUDP(buf)
			if err != nil {
				return
			}
			count(from.IP.String(), n)
		}
	}()
	fmt.Println("peer ready")
	for range time.Tick(500 * time.Millisecond) {
		mu.Lock()
		b, _ := json.Marshal(got)
		mu.Unlock()
		fmt.Printf("counts %s\n", b)
	}
}

// countAndAnswer reads a connection to its end and writes back how many
// bytes came, in how long from the first.
func countAndAnswer(c net.Conn) {
	defer c.Close()
	n, secs := benchenv.Count(c)
	b, _ := json.Marshal(map[string]any{"bytes": n, "seconds": secs})
	c.Write(append(b, '\n'))
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}
