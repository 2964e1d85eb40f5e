#include "cli_common.h"

#include <cstdio>
#include <iostream>

#include "core/error.h"
#include "io/mmap_file.h"

namespace sq::cli {

std::string read_text_arg(const std::filesystem::path& path, const std::string& flag) {
  SQ_CHECK(std::filesystem::exists(path), "{} {}: file not found", flag, path.string());
  SQ_CHECK(std::filesystem::is_regular_file(path), "{} {}: not a regular file", flag,
           path.string());
  std::string text = read_text_file(path);
  SQ_CHECK(!text.empty(),
           "{} {}: the file is empty; give a text with at least one window of tokens", flag,
           path.string());
  return text;
}

CLI::Validator model_dir_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (!std::filesystem::is_directory(s)) {
          return "MODEL " + s +
                 " is not a directory (expected a Hugging Face model folder with config.json)";
        }
        return {};
      },
      "DIR");
}

void print_json(const Json& j) { std::cout << j.dump(2) << std::endl; }

}  // namespace sq::cli
