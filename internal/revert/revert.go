// Package revert undoes the completed steps of a multi-step operation when
// a later step fails: r := revert.New(); defer r.Fail(); ...; r.Success().
package revert

// Reverter runs its undo functions in reverse order unless Success was called.
type Reverter struct{ fns []func() }

// New returns an empty Reverter.
func New() *Reverter { return &Reverter{} }

// Add registers an undo step.
func (r *Reverter) Add(fn func()) { r.fns = append(r.fns, fn) }

// Fail runs the undo steps, newest first; after Success it does nothing.
func (r *Reverter) Fail() {
	for i := len(r.fns) - 1; i >= 0; i-- {
		r.fns[i]()
	}
	r.fns = nil
}

// Success keeps everything done so far.
func (r *Reverter) Success() { r.fns = nil }
