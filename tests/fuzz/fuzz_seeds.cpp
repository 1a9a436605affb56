// Writes the seed corpus of the fuzz targets: one file per valid sample frame
// (tests/transport/wire_samples.h) into the directory given, named seed-<type>-<n>.
// scripts/fuzz.sh runs it before each fuzz run; tests/fuzz/corpus/ holds its output too.
#include <cstdio>
#include <fstream>
#include <string>

#include "tests/transport/wire_samples.h"

int main(int argc, char** argv) {
  using namespace dsrt::transport;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIRECTORY\n", argv[0]);
    return 2;
  }
  int n = 0;
  for (const frame_bytes& f : testing::sample_frames(clock_anchor::now())) {
    const auto type = frame_type(std::to_integer<int>(f[6]) | std::to_integer<int>(f[7]) << 8);
    const std::string path = std::string(argv[1]) + "/seed-" + frame_type_name(type) + "-" + std::to_string(n++);
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(f.data()), std::streamsize(f.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write %s\n", path.c_str());
      return 1;
    }
  }
  std::printf("%d seed frames written to %s\n", n, argv[1]);
  return 0;
}
