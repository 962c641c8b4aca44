package chaos

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The writer's disk, in 4 KiB blocks (a whole page a record, so the
// guest's page cache never rewrites a neighbour's block):
//
//	0..11   the writer script, NUL-padded (the guest reads it from here)
//	12..15  the collision area: a writer that finds its next block taken
//	        writes "RFX host boot block" here and stops
//	16..    records "RFW host boot seq block\n", one a block, in order
const (
	blockSize      = 4096
	scriptBlocks   = 12
	collisionFirst = 12
	recordFirst    = 16
)

// writerScript appends (host, boot id, sequence) records to the disk,
// each written with fsync, four a second. It finds the end of the
// records by bisection (they are contiguous, which the verifier checks)
// and never writes a block that is not empty: a taken block means
// another writer is on the disk, said in the collision area.
const writerScript = `# ringfence HA writer (tests/chaos): sh w.sh HOST
# RFW_DISK, RFW_BLOCKS, RFW_BOOT, RFW_COUNT, RFW_SLEEP: for the tests.
D=${RFW_DISK:-/dev/vda}; H=$1; B=${RFW_BOOT:-$(cat /proc/sys/kernel/random/boot_id)}
MAX=$(( ${RFW_BLOCKS:-$(( $(cat /sys/block/vda/size) / 8 ))} - 16 )); END=$(( ${RFW_COUNT:--1} ))
has() { [ -n "$(dd if=$D bs=4096 skip=$(( $1 + 16 )) count=1 iflag=direct 2>/dev/null | tr -d '\000')" ]; }
put() { printf "$2" | dd of=$D bs=4096 seek=$1 count=1 conv=sync,notrunc,fsync 2>/dev/null; }
lo=0; hi=$MAX
while [ $lo -lt $hi ]; do m=$(( (lo + hi) / 2 )); if has $m; then lo=$(( m + 1 )); else hi=$m; fi; done
N=$lo; S=0
echo "RFW-START host=$H boot=$B at=$N"
while [ $N -lt $MAX ] && [ $S -ne $END ]; do
  if has $N; then put $(( 12 + S % 4 )) "RFX $H $B $N\\n"; echo "RFW-COLLISION at=$N"; exit 1; fi
  put $(( N + 16 )) "RFW $H $B $S $N\\n" || { echo "RFW-IOERROR at=$N"; exit 1; }
  S=$(( S + 1 )); N=$(( N + 1 )); sleep ${RFW_SLEEP:-0.25}
done
echo "RFW-STOP at=$N"
`

// WriterStart is the line typed on the guest's console to start the
// writer as host's incarnation: the script is read from the disk.
func WriterStart(host string) string {
	return fmt.Sprintf("dd if=/dev/vda bs=4096 count=%d 2>/dev/null | tr -d '\\000' > /tmp/w.sh; sh /tmp/w.sh %s &", scriptBlocks, host)
}

// WriterStarted is what the writer prints once it has found its place.
const WriterStarted = "RFW-START host="

// MakeWriterDisk creates the writer's raw disk of sizeMiB at path (sparse),
// the script in its first blocks.
func MakeWriterDisk(path string, sizeMiB int) error {
	if len(writerScript) > scriptBlocks*blockSize {
		return fmt.Errorf("the writer script is over %d bytes", scriptBlocks*blockSize)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(writerScript); err == nil {
		err = f.Truncate(int64(sizeMiB) << 20)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// Record is one block the writer wrote.
type Record struct {
	Host, Boot string
	Seq, Block int
}

// Run is one incarnation's records: one boot of the guest on one host.
type Run struct {
	Host, Boot  string
	First, Last int // blocks
	Records     int
}

// Verdict is what the verifier found on a writer's disk.
type Verdict struct {
	Records    int
	Runs       []Run
	Violations []string
}

// OK says no two writers ever wrote over each other's time.
func (v Verdict) OK() bool { return len(v.Violations) == 0 }

// Hosts is the hosts the incarnations ran on, in order.
func (v Verdict) Hosts() []string {
	var hs []string
	for _, r := range v.Runs {
		hs = append(hs, r.Host)
	}
	return hs
}

func (v Verdict) String() string {
	s := fmt.Sprintf("%d records in %d incarnations (%s)", v.Records, len(v.Runs), strings.Join(v.Hosts(), " "))
	if !v.OK() {
		s += "; VIOLATIONS: " + strings.Join(v.Violations, "; ")
	}
	return s
}

// VerifyDisk reads a writer's disk and proves, or refutes, that the
// incarnations wrote one after another: each incarnation's records are
// one contiguous run with its sequence 0, 1, 2, ... (a second writer
// overwriting any of them breaks the run), no incarnation appears again
// after another began (a stale owner writing after its fence point),
// no record follows an empty block, nothing is in the collision area.
func VerifyDisk(path string) (Verdict, error) {
	f, err := os.Open(path)
	if err != nil {
		return Verdict{}, err
	}
	defer f.Close()
	return verify(f)
}

func verify(r io.Reader) (Verdict, error) {
	var v Verdict
	buf := make([]byte, blockSize)
	var recs []*Record
	gap := -1 // the first empty record block
	for blk := 0; ; blk++ {
		if _, err := io.ReadFull(r, buf); err == io.EOF {
			break
		} else if err != nil {
			return v, fmt.Errorf("reading block %d: %w", blk, err)
		}
		text := string(bytes.TrimRight(buf, "\x00"))
		switch {
		case blk < collisionFirst:
		case blk < recordFirst:
			if text != "" {
				v.Violations = append(v.Violations, fmt.Sprintf("a writer found its next block taken: %q", strings.TrimSpace(text)))
			}
		case text == "":
			if gap < 0 {
				gap = blk - recordFirst
			}
		default:
			rec, err := parseRecord(text)
			if err != nil {
				v.Violations = append(v.Violations, fmt.Sprintf("block %d: %v", blk-recordFirst, err))
				continue
			}
			if gap >= 0 {
				v.Violations = append(v.Violations, fmt.Sprintf("record at block %d after the empty block %d", blk-recordFirst, gap))
			}
			if rec.Block != blk-recordFirst {
				v.Violations = append(v.Violations, fmt.Sprintf("block %d holds the record meant for block %d", blk-recordFirst, rec.Block))
			}
			recs = append(recs, rec)
		}
	}
	v.Records = len(recs)
	v.Runs, v.Violations = runs(recs, v.Violations)
	return v, nil
}

// runs groups records into incarnations and checks their order.
func runs(recs []*Record, bad []string) ([]Run, []string) {
	var out []Run
	done := map[string]string{} // boot id -> host, of every run so far
	for _, rec := range recs {
		if n := len(out); n > 0 && out[n-1].Boot == rec.Boot {
			cur := &out[n-1]
			if rec.Seq != cur.Records {
				bad = append(bad, fmt.Sprintf("block %d: %s's incarnation %s wrote seq %d where %d was due (records lost or overwritten)", rec.Block, rec.Host, short(rec.Boot), rec.Seq, cur.Records))
			}
			if rec.Host != cur.Host {
				bad = append(bad, fmt.Sprintf("block %d: incarnation %s on two hosts (%s, %s)", rec.Block, short(rec.Boot), cur.Host, rec.Host))
			}
			cur.Last, cur.Records = rec.Block, cur.Records+1
			continue
		}
		if host, seen := done[rec.Boot]; seen {
			bad = append(bad, fmt.Sprintf("block %d: %s's incarnation %s wrote again after another had begun (two writers)", rec.Block, host, short(rec.Boot)))
		}
		if rec.Seq != 0 {
			bad = append(bad, fmt.Sprintf("block %d: %s's incarnation %s begins at seq %d, not 0", rec.Block, rec.Host, short(rec.Boot), rec.Seq))
		}
		done[rec.Boot] = rec.Host
		out = append(out, Run{Host: rec.Host, Boot: rec.Boot, First: rec.Block, Last: rec.Block, Records: 1})
	}
	return out, bad
}

func parseRecord(text string) (*Record, error) {
	f := strings.Fields(text)
	if len(f) != 5 || f[0] != "RFW" {
		return nil, fmt.Errorf("not a writer's record: %q", text)
	}
	seq, err1 := strconv.Atoi(f[3])
	blk, err2 := strconv.Atoi(f[4])
	if err1 != nil || err2 != nil || seq < 0 {
		return nil, fmt.Errorf("a record with a bad number: %q", text)
	}
	return &Record{Host: f[1], Boot: f[2], Seq: seq, Block: blk}, nil
}

func short(boot string) string {
	if len(boot) > 8 {
		return boot[:8]
	}
	return boot
}
