package bert

import (
	"fmt"
	"math"
)

// Activation is the feed-forward non-linearity.
type Activation string

// The GELU variants bertq can run. The Hugging Face names map onto them by
// ParseActivation.
const (
	GELUExact Activation = "gelu"       // x·Φ(x), with erf
	GELUTanh  Activation = "gelu_tanh"  // the tanh approximation (gelu_new, gelu_pytorch_tanh)
	GELUCrude Activation = "gelu_crude" // x·sigmoid(1.702x), the seed's --crude_gelu
)

// ParseActivation accepts the Hugging Face hidden_act spellings and bertq's own.
func ParseActivation(s string) (Activation, error) {
	switch s {
	case "gelu", "exact", "gelu_exact":
		return GELUExact, nil
	case "gelu_new", "gelu_pytorch_tanh", "gelu_tanh", "tanh", "gelu_fast":
		return GELUTanh, nil
	case "crude", "gelu_crude", "quick_gelu":
		return GELUCrude, nil
	}
	return "", fmt.Errorf("unsupported activation %q (want gelu, gelu_new, gelu_pytorch_tanh, or crude)", s)
}

// Apply evaluates the activation in float64, the reference arithmetic.
func (a Activation) Apply(x float64) float64 {
	switch a {
	case GELUTanh:
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	case GELUCrude:
		return x / (1 + math.Exp(-1.702*x))
	default:
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt2))
	}
}
