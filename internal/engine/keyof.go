package engine

import (
	"fmt"

	"github.com/pipebuild/pipe/internal/cache"
)

// KeyOf computes the key of an action that the latest Execute did not
// run, and its parts, from the outputs that Execute gave its inputs: a
// caller can then decide, from what changed since an earlier key, whether
// to run the action at all (pipe deploy --hotswap and a synth whose only
// changed inputs are asset directories). Every action that generates one
// of a's inputs must have succeeded in the latest Execute.
func (e *Executor) KeyOf(a *Action) (cache.ActionKey, *KeyParts, error) {
	for _, in := range a.Inputs {
		if in.Generator == nil {
			continue
		}
		if s := e.last[in.Generator]; s == nil || !s.ok {
			return cache.ActionKey{}, nil, fmt.Errorf("internal error: the key of %s %s needs %s, which was not built", a.Owner, a.Mnemonic, in.Path)
		}
	}
	return e.actionKey(a, e.last)
}
