package python

import (
	"os"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// TestMain sums up the tests skipped for a missing interpreter.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
