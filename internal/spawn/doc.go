// Package spawn starts the programs suserve runs, each as its Unix identity
// and in its cell, and says how each one ended. Before any exec it applies
// the policy checks of DESIGN.md "Run-as modes" to an opened descriptor and
// executes that descriptor, and every refusal, exec failure and ending is a
// *Failure with its own Cause.
package spawn
