// `bitttt bench tokenizer`: encode throughput on the TinyStories validation text (documents split
// at <|endoftext|>, GPT-2's vocabulary) with one thread and with all threads, next to the Python
// `tokenizers` package on the same documents and the same tokenizer.json, measured in the same
// run by bench/bench_tokenizer_hf.py. The ids of both must be identical, or the benchmark fails.
// Without --quick it also times training a 16384 vocabulary on the TinyStories training text
// against the package's BpeTrainer.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bitttt/tokenizer.hpp"
#include "cli/bench.hpp"
#include "core/error.hpp"
#include "core/threads.hpp"
#include "tokenizer/gpt2_files.hpp"
#include "tokenizer/text_file.hpp"

namespace bitttt::cli {

namespace {

namespace fs = std::filesystem;

// The shared data directory: $BITTTT_DATA, else ../shared/data from the working directory or
// from the directory above the executable's build directory.
fs::path shared_data_dir() {
    if (const char* env = std::getenv("BITTTT_DATA")) return env;
    std::vector<fs::path> candidates = {fs::current_path() / ".." / "shared" / "data"};
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back(exe.parent_path() / ".." / ".." / "shared" / "data");
    for (const auto& c : candidates) {
        if (fs::exists(c / "tinystories" / "valid.txt.gz")) return fs::weakly_canonical(c);
    }
    fail(ErrorKind::kIo,
         "bench tokenizer: shared data not found (set BITTTT_DATA to .../shared/data)");
}

// bench/bench_tokenizer_hf.py, looked up from the working directory, then next to the build dir.
fs::path reference_script() {
    std::vector<fs::path> candidates = {fs::current_path() / "bench" / "bench_tokenizer_hf.py"};
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back(exe.parent_path() / ".." / "bench" / "bench_tokenizer_hf.py");
    for (const auto& c : candidates) {
        if (fs::exists(c)) return c;
    }
    return {};
}

struct Reference {
    bool ok = false;
    std::string error;
    nlohmann::json result;
};

// Runs the Python reference; its JSON line is parsed from stdout.
Reference run_reference(const fs::path& script, const std::string& args) {
    Reference ref;
    if (script.empty()) {
        ref.error = "bench/bench_tokenizer_hf.py not found";
        return ref;
    }
    const std::string command = fmt::format("python3 '{}' {} 2>&1", script.string(), args);
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) {
        ref.error = "cannot run python3";
        return ref;
    }
    std::string output;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
    const int status = pclose(pipe);
    const size_t last_line = output.rfind('{');
    if (status != 0 || last_line == std::string::npos) {
        ref.error = fmt::format("reference failed: {}", output.substr(0, 300));
        return ref;
    }
    try {
        ref.result = nlohmann::json::parse(output.substr(last_line));
        ref.ok = true;
    } catch (const nlohmann::json::exception&) {
        ref.error = fmt::format("reference printed no JSON: {}", output.substr(0, 300));
    }
    return ref;
}

std::vector<uint32_t> read_ids(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<uint32_t> ids(bytes.size() / 4);
    for (size_t i = 0; i < ids.size(); ++i) {
        const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + 4 * i);
        ids[i] = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
    }
    return ids;
}

}  // namespace

void bench_tokenizer(const BenchOptions& options, BenchReporter& reporter) {
    const fs::path data = shared_data_dir();
    const std::string valid_path = (data / "tinystories" / "valid.txt.gz").string();
    const std::string text = tok::read_text_file(valid_path);
    const std::string gpt2_json =
        tok::gpt2_tokenizer_json((data / "tokenizers" / "gpt2" / "encoder.json").string(),
                                 (data / "tokenizers" / "gpt2" / "vocab.bpe").string());
    const Tokenizer tokenizer = Tokenizer::from_json(gpt2_json, "gpt2");

    // The same documents the script makes with Python's str.split("<|endoftext|>").
    std::vector<std::string_view> docs;
    const std::string_view sep = "<|endoftext|>";
    size_t total_bytes = 0;
    for (size_t start = 0;;) {
        size_t end = text.find(sep, start);
        std::string_view doc(text.data() + start,
                             (end == std::string::npos ? text.size() : end) - start);
        docs.push_back(doc);
        total_bytes += doc.size();
        if (end == std::string::npos) break;
        start = end + sep.size();
    }

    // A private temp dir for the tokenizer.json handed to the package and the ids it returns.
    std::string tmp_template = (fs::temp_directory_path() / "bitttt-bench-tok-XXXXXX").string();
    check(mkdtemp(tmp_template.data()) != nullptr, ErrorKind::kIo, "cannot create a temp dir");
    const fs::path tmp = tmp_template;
    const fs::path json_path = tmp / "tokenizer.json", ids_path = tmp / "ids.bin";
    tokenizer.save(json_path.string());
    const fs::path script = reference_script();
    const int repeat = options.quick ? 2 : 5;

    const int all_threads = num_threads();
    for (int threads : {1, all_threads}) {
        std::vector<std::vector<uint32_t>> ids;
        const double seconds = seconds_per_call(
            [&] { ids = tokenizer.encode_batch(docs, threads); }, options.quick ? 0.1 : 0.5, 3);
        const double mb_per_s = static_cast<double>(total_bytes) / seconds / 1e6;

        Reference ref = run_reference(
            script,
            fmt::format("--tokenizer '{}' --text '{}' --threads {} --repeat {} --ids-out '{}'",
                        json_path.string(), valid_path, threads == all_threads ? 0 : 1, repeat,
                        ids_path.string()));
        std::string reference;
        double ratio = 0;
        if (ref.ok) {
            std::vector<uint32_t> flat;
            for (const auto& v : ids) flat.insert(flat.end(), v.begin(), v.end());
            check(flat == read_ids(ids_path), ErrorKind::kInternal,
                  "bench tokenizer: our ids differ from the tokenizers package's");
            const double ref_mb_per_s = ref.result["mb_per_s"].get<double>();
            ratio = mb_per_s / ref_mb_per_s;
            reference =
                fmt::format("{} encode_batch {} thread(s): {:.2f} MB/s, ids identical",
                            ref.result["package"].get<std::string>(), threads, ref_mb_per_s);
        } else {
            reference = ref.error;
        }
        reporter.report({fmt::format("tokenizer.encode.gpt2.{}t", threads), mb_per_s, "MB/s",
                         reference, ratio});
        if (all_threads == 1) break;
    }

    if (!options.quick) {
        // Training: 16384 tokens on the 16 MB TinyStories training text.
        const std::string train_path = (data / "tinystories" / "train.txt.gz").string();
        TokenizerTrainOptions train_options;
        train_options.vocab_size = 16384;
        const auto start = std::chrono::steady_clock::now();
        Tokenizer trained = Tokenizer::train({train_path}, train_options);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        Reference ref = run_reference(
            script, fmt::format("--tokenizer '{}' --text '{}' --threads 0 --repeat 1 --train '{}'",
                                json_path.string(), valid_path, train_path));
        std::string reference = ref.error;
        double ratio = 0;
        if (ref.ok) {
            const double ref_seconds = ref.result["train_seconds"].get<double>();
            ratio = ref_seconds / seconds;  // > 1: we are faster
            reference = fmt::format("{} BpeTrainer: {:.1f} s (ratio = its time / ours)",
                                    ref.result["package"].get<std::string>(), ref_seconds);
        }
        reporter.report({fmt::format("tokenizer.train.{}", trained.vocab_size()), seconds, "s",
                         reference, ratio});
    }
    std::error_code ec;
    fs::remove_all(tmp, ec);
}

}  // namespace bitttt::cli
