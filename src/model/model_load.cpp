// Model::load: a .bitt file or a model directory through the loader, plus its tokenizer.
#include "bitttt/model.hpp"
#include "bitttt/tokenizer.hpp"
#include "core/error.hpp"
#include "model/loader.hpp"

namespace bitttt {

std::shared_ptr<const Model> Model::load(const std::string& path, const DeviceOptions& options) {
    LoadedModel loaded = load_model(path);
    std::shared_ptr<const Tokenizer> tokenizer;
    if (loaded.tokenizer_json) {
        tokenizer = std::make_shared<const Tokenizer>(
            Tokenizer::from_json(*loaded.tokenizer_json, path + " (tokenizer)"));
        check(tokenizer->vocab_size() <= loaded.weights.config.vocab_size,
              ErrorKind::kDimensionMismatch,
              "{}: the tokenizer has {} tokens, more than the model's vocabulary of {}", path,
              tokenizer->vocab_size(), loaded.weights.config.vocab_size);
    }
    return from_weights(std::move(loaded.weights), std::move(tokenizer), options);
}

}  // namespace bitttt
