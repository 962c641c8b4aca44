package network

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// The bucket handed to the kernel is a time: converted back at the rate
// it must be the interval's bytes (at least two full frames), or full
// frames are dropped.
func TestTbfParams(t *testing.T) {
	cases := []struct {
		name              string
		bytes, intervalUS int64
		rate              uint64
		bucket            uint32 // bytes
	}{
		{"10Mb/s@50ms", 62500, 50000, 1250000, 62500},
		{"5Mb/s@50ms", 31250, 50000, 625000, 31250},
		{"1MB/s@20ms", 20000, 20000, 1000000, 20000},
		{"tiny rate: two frames", 500, 50000, 10000, 3200},
		{"1Gb/s@50ms", 6250000, 50000, 125000000, 6250000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rate, buffer, limit := tbfParams(c.bytes, c.intervalUS)
			if rate != c.rate {
				t.Fatalf("rate %d B/s, want %d", rate, c.rate)
			}
			got := netlink.Xmitsize(rate, buffer)
			if got < c.bucket*99/100 || got > c.bucket*101/100 {
				t.Fatalf("the kernel's bucket is %d bytes (buffer %d ticks), want %d", got, buffer, c.bucket)
			}
			if got < 1514 || limit < 4*c.bucket {
				t.Fatalf("bucket %d, queue %d: a full frame must fit", got, limit)
			}
		})
	}
}
