// Package skipdemo is run by testenv's tests: one test that needs a
// component no machine has, and one that passes.
package skipdemo

import (
	"os"
	"testing"

	"github.com/pipebuild/pipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestNeedsUnicorn(t *testing.T) {
	testenv.Need(t, "a unicorn", "apt-get install unicorn")
}

func TestPasses(t *testing.T) {}
