// Package chaos is the fault side of the HA proof (issue 21): a lossy
// userspace proxy for the cluster link (this kernel has no netem), the
// faults a host can suffer in the three-namespace test cluster, and the
// writer guest with the verifier that proves no guest ever ran twice.
// The e2e tests and bench/failover share it; it drives the product from
// outside (namespaces, signals, disks), never its insides.
package chaos

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread that has joined network namespace ns
// (a name under /run/netns). Sockets fn makes belong to ns. The thread
// is never handed back to the runtime (the goroutine exits locked), so
// no other goroutine ever runs in ns by accident.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked on purpose: the thread dies with the goroutine.
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("network namespace %s: %w", ns, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("joining network namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsWorker is a goroutine that stays in a namespace and runs jobs there
// (a dial's socket must be made by a thread inside the namespace).
type nsWorker struct{ jobs chan func() }

// startWorkers starts n workers in ns; stop ends them.
func startWorkers(ns string, n int) (w *nsWorker, stop func(), err error) {
	w = &nsWorker{jobs: make(chan func())}
	ready := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			ready <- inNetns(ns, func() error {
				ready <- nil
				for job := range w.jobs {
					job()
				}
				return nil
			})
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-ready; err != nil {
			close(w.jobs)
			return nil, nil, err
		}
	}
	return w, func() { close(w.jobs) }, nil
}

// run runs fn on one of the workers and waits for it.
func (w *nsWorker) run(fn func()) {
	done := make(chan struct{})
	w.jobs <- func() { fn(); close(done) }
	<-done
}
