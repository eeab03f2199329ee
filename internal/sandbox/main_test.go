package sandbox

import (
	"os"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

// TestMain sums up the tests skipped where namespaces are unavailable.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
