package migration

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Data connections carry the memory stream and, with --with-storage, one
// NBD connection per disk (token + NBDSuffix). Encrypted, they are a
// mutual-TLS upgrade to /migrate/data/{token}; plain (--plain-stream),
// a TCP connection to the same peer port that starts with DataPreface and
// the token, which never starts a TLS record, so the peer listener tells
// the two apart by the first byte.

// DataPreface starts a plain migration data connection; the token follows.
const DataPreface = "RFMIG1 "

// NBDSuffix marks a data connection meant for the NBD server.
const NBDSuffix = ".nbd"

// maxPreface bounds the preface line (the token is short hex).
const maxPreface = 128

// IsData says whether a connection's first byte starts a plain data
// connection rather than a TLS handshake.
func IsData(first byte) bool { return first == DataPreface[0] }

// DialPlain opens a plain data connection to target, named by the token
// the destination gave on the authenticated control channel; the QEMUs
// then use it directly.
func DialPlain(ctx context.Context, target, token string) (*net.TCPConn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", target, err)
	}
	if _, err := io.WriteString(c, DataPreface+token+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// ReadDataToken reads the rest of a plain data connection's preface,
// whose first byte was first, and returns its token ("" if the line is
// not a preface; an error if the connection broke). It reads a byte at a
// time so nothing of the stream behind it is consumed.
func ReadDataToken(c net.Conn, first byte) (string, error) {
	line := []byte{first}
	b := make([]byte, 1)
	for len(line) < maxPreface && line[len(line)-1] != '\n' {
		if _, err := io.ReadFull(c, b); err != nil {
			return "", err
		}
		line = append(line, b[0])
	}
	token, ok := strings.CutPrefix(strings.TrimSpace(string(line)), strings.TrimSpace(DataPreface))
	if !ok {
		return "", nil
	}
	return strings.TrimSpace(token), nil
}
