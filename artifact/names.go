package artifact

import "fmt"

// Tensor names of the compiled layout. Matmul weights are [in][out] row-major;
// everything that is not an encoder matmul weight is f32.
const (
	WordEmbeddings      = "embeddings.word"       // [vocab][hidden]
	PositionEmbeddings  = "embeddings.position"   // [max_positions][hidden]
	TokenTypeEmbeddings = "embeddings.token_type" // [type_vocab][hidden]
	EmbNormGamma        = "embeddings.norm.gamma"
	EmbNormBeta         = "embeddings.norm.beta"
	PoolerWeight        = "pooler.weight" // [hidden][hidden]
	PoolerBias          = "pooler.bias"
	ClassifierWeight    = "classifier.weight" // [hidden][labels]
	ClassifierBias      = "classifier.bias"
	Vocab               = "tokenizer.vocab" // vocab.txt bytes
)

// LayerTensor names a tensor of encoder layer l. Parts: qkv.weight [hidden][3·hidden]
// (columns Q|K|V, Q pre-scaled by 1/√head_dim), qkv.bias, attn_out.weight,
// attn_out.bias, attn_norm.gamma, attn_norm.beta, ffn_in.weight
// [hidden][intermediate], ffn_in.bias, ffn_out.weight [intermediate][hidden],
// ffn_out.bias, ffn_norm.gamma, ffn_norm.beta.
func LayerTensor(l int, part string) string { return fmt.Sprintf("layer.%d.%s", l, part) }

// Layer tensor parts.
const (
	QKVWeight     = "qkv.weight"
	QKVBias       = "qkv.bias"
	AttnOutWeight = "attn_out.weight"
	AttnOutBias   = "attn_out.bias"
	AttnNormGamma = "attn_norm.gamma"
	AttnNormBeta  = "attn_norm.beta"
	FFNInWeight   = "ffn_in.weight"
	FFNInBias     = "ffn_in.bias"
	FFNOutWeight  = "ffn_out.weight"
	FFNOutBias    = "ffn_out.bias"
	FFNNormGamma  = "ffn_norm.gamma"
	FFNNormBeta   = "ffn_norm.beta"
)
