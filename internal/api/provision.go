package api

// OS images, provisioning and the guest agent (docs/provisioning.md).

import "time"

// Image is an OS image (`image build`): a template volume in a pool that
// new domains are thin-cloned from, and the files to boot it directly.
type Image struct {
	Name     string   `json:"name"`
	Pool     string   `json:"pool"`
	OS       string   `json:"os"`     // e.g. "Debian GNU/Linux 12 (bookworm)"
	Recipe   string   `json:"recipe"` // hash of what it was made from
	Packages []string `json:"packages,omitempty"`
	SizeB    int64    `json:"size_bytes"` // the template's virtual size
	// Root is the root filesystem's device in a guest booted from a
	// clone as its first disk; Cmdline the kernel command line for
	// direct kernel boot (the image's own GRUB uses the same).
	Root         string    `json:"root"`
	Cmdline      string    `json:"cmdline"`
	Built        time.Time `json:"built"`
	BuildSeconds float64   `json:"build_seconds,omitempty"`
	Template     string    `json:"template,omitempty"` // the template volume's path
	Kernel       string    `json:"kernel,omitempty"`
	Initrd       string    `json:"initrd,omitempty"`
	Clones       []string  `json:"clones,omitempty"` // volumes of the pool backed by the template
}

// Provision makes a domain from an OS image (`create --image`, the
// domain-file keys image=, disk_size=, ssh_authorized_keys=...): its
// first disk a thin clone of the image's template grown to DiskSizeB,
// and a cloud-init NoCloud seed (a read-only second disk, label cidata)
// that configures it at first boot. The seed is made again at every
// start, so changed settings reach the guest.
type Provision struct {
	Image     string   `json:"image"`
	ImagePool string   `json:"image_pool,omitempty"` // "" = the pool that has it
	DiskSizeB int64    `json:"disk_size_bytes,omitempty"`
	Hostname  string   `json:"hostname,omitempty"` // "" = the domain's name
	SSHKeys   []string `json:"ssh_authorized_keys,omitempty"`
	// PasswordHash is root's password as crypt(3) ($6$..., $y$...);
	// write-only: the API shows HiddenPassword in its place.
	PasswordHash string `json:"password_hash,omitempty"`
	// UserData is passed to cloud-init beside Ringfence's own
	// configuration (#cloud-config, or a script).
	UserData string `json:"user_data,omitempty"`
	// Disk and Seed are the clone and the seed once made (set by the
	// daemon): a renamed domain keeps its disk.
	Disk string `json:"disk,omitempty"`
	Seed string `json:"seed,omitempty"`
}

// GuestInfo is what a domain's guest agent says (GET /1.0/domains/NAME/guest).
type GuestInfo struct {
	OS     string     `json:"os,omitempty"`
	Kernel string     `json:"kernel,omitempty"`
	NICs   []GuestNIC `json:"nics"`
}

// GuestNIC is one guest interface with its addresses (CIDR form).
type GuestNIC struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// GuestExecRequest runs a command in the guest through its agent (no
// shell: Argv[0] is the program).
type GuestExecRequest struct {
	Argv       []string `json:"argv"`
	Stdin      []byte   `json:"stdin,omitempty"`
	TimeoutSec int      `json:"timeout_sec,omitempty"` // default 60
}

// GuestExecResult is what it did.
type GuestExecResult struct {
	ExitCode int    `json:"exit_code"`
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
}

// GuestPasswordRequest sets a guest user's password through the agent.
type GuestPasswordRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}
