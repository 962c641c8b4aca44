package spec

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Transfer quota actions (Ringfence keys transfer_quota and
// transfer_action; a tenant's quota takes the same action words).
const (
	TransferNotify   = "notify"   // an event on the stream, nothing else
	TransferThrottle = "throttle" // throttle:RATE on every vif
	TransferPause    = "pause"    // the domain is paused
)

var bitRateRE = regexp.MustCompile(`^([0-9]+)(Gbit|Mbit|Kbit|bit)$`)

// ParseTransferAction reads transfer_action: notify, pause, or
// throttle:RATE with RATE in bits per second (10Mbit, 512Kbit) or as
// xl's rate= writes it (10Mb/s, 1MB/s). bytesPerSec is the throttle's.
func ParseTransferAction(s string) (kind string, bytesPerSec int64, err error) {
	switch s {
	case "", TransferNotify:
		return TransferNotify, 0, nil
	case TransferPause:
		return TransferPause, 0, nil
	}
	rate, ok := strings.CutPrefix(s, TransferThrottle+":")
	if !ok {
		return "", 0, fmt.Errorf("%q is not a transfer action: write notify, pause or throttle:RATE (e.g. throttle:10Mbit)", s)
	}
	if m := bitRateRE.FindStringSubmatch(rate); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		bps := n * map[string]int64{"Gbit": 1e9, "Mbit": 1e6, "Kbit": 1e3, "bit": 1}[m[2]] / 8
		if bps <= 0 || n > 1e6 {
			return "", 0, fmt.Errorf("throttle:%s: the rate must be between 8bit and 1000000Gbit", rate)
		}
		return TransferThrottle, bps, nil
	}
	per, iv, err := ParseRate(rate)
	if err != nil {
		return "", 0, fmt.Errorf("throttle:%s: write the rate in bits per second (10Mbit, 512Kbit) or as rate= does (10Mb/s)", rate)
	}
	return TransferThrottle, per * 1e6 / iv, nil
}

// ValidTransferAction checks transfer_action.
func ValidTransferAction(s string) error {
	_, _, err := ParseTransferAction(s)
	return err
}
