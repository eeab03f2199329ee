package journal

import "testing"

// When the journal outgrows its bound it starts a new instance, voiding
// older tokens; what it holds unwatched (symbolic links, skipped
// directories) is the watcher's state, found once, and must stay.
func TestJournalTrimKeepsUnwatched(t *testing.T) {
	j := newJournal()
	j.limit = 8
	j.ready = true
	j.setUnwatched("lib/link", true)
	old := j.since(Token{}).Now
	for i := 0; i < 20; i++ {
		j.changed("src/f")
		j.changedTree("dist/t")
		j.changed("src/g" + string(rune('a'+i)))
	}
	if c := j.since(old); c.Complete {
		t.Fatalf("a token from before the trim is still answered: %+v", c)
	}
	tok := j.since(Token{}).Now
	c := j.since(tok)
	if !c.Complete {
		t.Fatalf("a token from after the trim: %s", c.Why)
	}
	if c.Unchanged("lib/link/target.txt") {
		t.Errorf("after the trim, a path through a symbolic link is vouched for; unwatched %q", c.Unwatched)
	}
	if !c.Unchanged("src/other") {
		t.Errorf("src/other is not vouched for")
	}
}
