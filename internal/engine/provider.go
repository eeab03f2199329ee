package engine

// InfoKey names a provider: a typed value a rule attaches to its target
// during analysis for the targets that depend on it and for the CLI. The
// type parameter is the value's type, so a reader gets back what the rule
// set without a type assertion, and a key cannot be read as another type.
// Rules export their keys next to the value types they carry.
type InfoKey[T any] struct{ name string }

// NewInfoKey returns the key of a provider. The name must be unique among
// the keys of every rule: a dotted "<rule family>.<what>" is the custom.
func NewInfoKey[T any](name string) InfoKey[T] { return InfoKey[T]{name: name} }

// String is the key's name.
func (k InfoKey[T]) String() string { return k.name }

// SetInfo attaches the provider value v under k to the target being
// analysed. Go methods cannot have type parameters, so this (like InfoOf
// and TargetInfo) is a function.
func SetInfo[T any](c *AnalysisContext, k InfoKey[T], v T) {
	if c.info == nil {
		c.info = map[string]any{}
	}
	c.info[k.name] = v
}

// InfoOf returns the provider value under k of the target that label l
// (written in the analysed target) names; false when l is a file or the
// target set no such value. Dependencies are analysed first, so their
// values are there.
func InfoOf[T any](c *AnalysisContext, l Label, k InfoKey[T]) (T, bool) {
	r := c.tg.Resolve(c.Target.Label, l)
	if r.Target == nil {
		var zero T
		return zero, false
	}
	return infoValue(c.ag.results[r.Target.Label].info, k)
}

// TargetInfo returns the provider value under k that target l set.
func TargetInfo[T any](ag *ActionGraph, l Label, k InfoKey[T]) (T, bool) {
	return infoValue(ag.results[l].info, k)
}

func infoValue[T any](info map[string]any, k InfoKey[T]) (T, bool) {
	v, ok := info[k.name].(T)
	return v, ok
}
