package broker

// MaxLookups is maxLookups, for tests.
const MaxLookups = maxLookups

// KnownModels is how many names the intake holds in memory.
func KnownModels(in *Intake) int { return in.models.size() }

// LookupsInFlight is how many bucket lookups run now.
func LookupsInFlight(in *Intake) int { return len(in.lookups) }

// WithLookupWrap runs wrap around each bucket lookup of an unknown name, so
// that a test can hold lookups in flight.
func WithLookupWrap(wrap func(model string, lookup func(string) (bool, error)) (bool, error)) IntakeOption {
	return func(o *intakeOptions) { o.wrapLookup = wrap }
}
