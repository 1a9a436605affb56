// The smallest app that embeds dsrt: start the serving runtime in-process on a model
// directory and stream one answer through dsrt::client.
//   dsrt-embed-example MODEL_DIR "a prompt"
#include <cstdio>
#include <future>

#include "actors/client.h"
#include "apps/common/runtime_setup.h"

int main(int argc, char** argv) {
  if (argc != 3 || std::string_view(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: %s MODEL_DIR PROMPT\n", argv[0]);
    return argc == 2 ? 0 : 2;
  }
  dsrt::apps::engine_flags engine{.model_dir = argv[1]};
  auto serving = dsrt::apps::start_runtime(engine, {.replicas = 2}, {});
  if (!serving) return dsrt::apps::report(serving.err());

  dsrt::client client(*serving->runtime);
  std::promise<void> done;
  auto id = client.submit(
      {.prompt = argv[2], .max_tokens = 32},
      [](const dsrt::actors::token_chunk& c) { std::printf("%s", c.text.c_str()), std::fflush(stdout); },
      [&](const dsrt::actors::final_message& f) {
        std::printf("\n%s\n", f.failure ? f.failure->to_string().c_str() : "[done]");
        done.set_value();
      });
  if (!id) return dsrt::apps::report(id.err());
  done.get_future().wait();
}
