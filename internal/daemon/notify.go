package daemon

import (
	"net"
	"os"
)

// sdNotify tells systemd (Type=notify) how the daemon is doing: "READY=1"
// once domains are recovered and the API answers, "STOPPING=1" at the
// end. Without NOTIFY_SOCKET (not under systemd) it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}
