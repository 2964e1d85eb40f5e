// smoothquant tokenize MODEL (--text STR | --file F) [--json]: ids and tokens, as HF computes them.
// MODEL may also be a directory that holds only tokenizer files.
#include <fmt/format.h>

#include "cli_common.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace sq::cli {
namespace {

struct TokenizeArgs {
  std::string model, text, file;
  bool json = false, no_special = false;
};

void run_tokenize(const TokenizeArgs& a) {
  const std::string text = a.file.empty() ? a.text : read_text_arg(a.file, "--file");
  SQ_CHECK(!text.empty(), "--text is empty: nothing to tokenize");
  const auto tok = load_tokenizer(a.model);
  const auto ids = tok->encode(text, !a.no_special);
  if (a.json) {
    Json tokens = Json::array();
    for (int32_t id : ids) tokens.push_back(tok->id_to_token(id));
    print_json({{"ids", ids}, {"tokens", tokens}});
    return;
  }
  for (int32_t id : ids) fmt::print("{:>8}  {}\n", id, tok->id_to_token(id));
  fmt::print(stderr, "{} tokens\n", ids.size());
}

}  // namespace

Runner register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  auto* c = app.add_subcommand(
      "tokenize", "Tokenize text with a model's tokenizer (tokenizer.json or tokenizer.model)");
  c->add_option("MODEL", a->model, "Model directory, or a directory with only tokenizer files")
      ->required()
      ->check(model_dir_validator());
  auto* t = c->add_option("--text", a->text, "Text to tokenize");
  auto* f = c->add_option("--file", a->file, "UTF-8 file to tokenize");
  t->excludes(f);
  c->add_flag("--no-special", a->no_special, "Do not add special tokens (BOS/EOS)");
  c->add_flag("--json", a->json, "Print {\"ids\": [...], \"tokens\": [...]}");
  c->callback([c, t, f] {
    if (t->count() == 0 && f->count() == 0) throw CLI::RequiredError("--text or --file");
  });
  (void)c;
  return [a] { run_tokenize(*a); };
}

}  // namespace sq::cli
