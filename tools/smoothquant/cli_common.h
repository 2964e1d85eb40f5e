// Shared pieces of the smoothquant CLI: subcommand registration, the global options, reading text
// inputs with clear errors, and JSON/table output helpers. Only this layer parses flags or prints
// for people; results go to stdout, logs and progress to stderr.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace sq::cli {

using Json = nlohmann::ordered_json;

struct Globals {
  int threads = 0;  // 0: all cores
  int verbosity = 0;
};

// Each subcommand registers itself and returns the function main runs when it was chosen.
using Runner = std::function<void()>;
Runner register_inspect(CLI::App& app);
Runner register_tokenize(CLI::App& app);
Runner register_perplexity(CLI::App& app);
Runner register_generate(CLI::App& app);
Runner register_make_demo(CLI::App& app);
Runner register_calibrate(CLI::App& app);
Runner register_smooth(CLI::App& app);
Runner register_evaluate(CLI::App& app);
Runner register_diagnose(CLI::App& app);
Runner register_quantize(CLI::App& app);
Runner register_bench(CLI::App& app);

// Reads a UTF-8 text file given by --text/--file; empty files are an error naming the flag.
std::string read_text_arg(const std::filesystem::path& path, const std::string& flag);

// Validator for MODEL positional arguments: an existing directory.
CLI::Validator model_dir_validator();

void print_json(const Json& j);

}  // namespace sq::cli
