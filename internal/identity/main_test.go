package identity

import (
	"testing"

	"go.uber.org/goleak"
)

// The System's re-read timer runs a goroutine only for the instant it fires;
// nothing else in this package may outlive a test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
