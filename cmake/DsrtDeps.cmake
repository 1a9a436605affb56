# Third-party dependencies, all from Debian 12 packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(CapnProto REQUIRED)
find_package(CAF 0.17 REQUIRED)         # cmake/FindCAF.cmake: Debian ships no config
pkg_check_modules(UCX IMPORTED_TARGET ucx)
# jemalloc (libjemalloc-dev) as dssim's allocator: a large simulation allocates and frees
# millions of small messages, and glibc's malloc spends a fifth of such a run in its own
# bookkeeping (docs/SIMULATION.md, "Scale"). Optional: without it dssim uses the C library's.
option(DSRT_JEMALLOC "Link dssim with jemalloc where it is installed" ON)
if(DSRT_JEMALLOC)
  find_library(DSRT_JEMALLOC_LIBRARY NAMES jemalloc)
  if(DSRT_JEMALLOC_LIBRARY)
    message(STATUS "dssim allocator: ${DSRT_JEMALLOC_LIBRARY}")
  else()
    message(STATUS "dssim allocator: the C library's (no libjemalloc-dev)")
  endif()
endif()
if(DSRT_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
