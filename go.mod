module github.com/ringfence/ringfence

go 1.26.0

require (
	github.com/vishvananda/netlink v1.3.1
	go.etcd.io/bbolt v1.5.0
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/vishvananda/netns v0.0.5 // indirect
)
