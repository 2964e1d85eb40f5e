// smoothquant: the command-line front end. Exit codes: 0 success, 1 user error (one line naming
// the file or flag and what to do), 2 usage error.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "backend/registry.h"
#include "cli_common.h"
#include "core/error.h"
#include "core/log.h"
#include "core/parallel.h"

extern "C" char* openblas_get_corename(void) __attribute__((weak));

// Debian 12's OpenBLAS 0.3.21 does not recognise recent x86 cores and falls back to its generic
// "Prescott" kernels, 4-5x slower than the AVX2/AVX-512 ones (measured: sgemm 25 vs 135 GFLOP/s on
// a Sapphire Rapids Xeon). OpenBLAS reads OPENBLAS_CORETYPE only at load time, so when it fell back
// and the user did not choose, re-execute once with the right core selected.
static void select_openblas_core(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || !openblas_get_corename) return;
  const char* core = openblas_get_corename();
  if (!core || std::string(core) != "Prescott") return;
  const char* want = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                         ? "SkylakeX"
                     : __builtin_cpu_supports("avx2") ? "Haswell"
                                                      : nullptr;
  if (!want) return;
  ::setenv("OPENBLAS_CORETYPE", want, 1);
  ::execv("/proc/self/exe", argv);  // returns only on failure: carry on with the generic kernels
}

int main(int argc, char** argv) {
  select_openblas_core(argv);
  CLI::App app{
      "smoothquant: calibrate, smooth and quantize Hugging Face LLMs to INT8 (W8A8, SmoothQuant), "
      "evaluate them, and run them.\n"
      "Start with:  smoothquant make-demo-model -o demo && smoothquant perplexity demo --text "
      "README.md",
      "smoothquant"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("smoothquant 0.1.0") +
                                        (sq::cuda_compiled() ? " (CUDA backend built)" : ""));
  sq::cli::Globals g;
  app.add_option("-t,--threads", g.threads, "CPU threads (default: all cores)")
      ->envname("SQ_THREADS")
      ->check(CLI::Range(0, 1024));
  app.add_flag("-v,--verbose", g.verbosity, "More logging on stderr (-v info, -vv debug)");
  app.fallthrough();

  std::map<CLI::App*, sq::cli::Runner> runners;
  auto reg = [&](sq::cli::Runner (*f)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    sq::cli::Runner r = f(app);
    runners[app.get_subcommands({}).at(before)] = std::move(r);
  };
  reg(sq::cli::register_inspect);
  reg(sq::cli::register_tokenize);
  reg(sq::cli::register_perplexity);
  reg(sq::cli::register_generate);
  reg(sq::cli::register_calibrate);
  reg(sq::cli::register_smooth);
  reg(sq::cli::register_quantize);
  reg(sq::cli::register_evaluate);
  reg(sq::cli::register_diagnose);
  reg(sq::cli::register_bench);
  reg(sq::cli::register_make_demo);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  try {
    sq::log::set_verbosity(g.verbosity);
    if (g.threads > 0) sq::set_num_threads(g.threads);
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) run();
    }
  } catch (const sq::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory; try a smaller model, --ctx or batch\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
