# Third-party dependencies, all from Debian 12 packages (scripts/setup.sh installs them).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(CapnProto REQUIRED)
find_package(CAF 0.17 REQUIRED)         # cmake/FindCAF.cmake: Debian ships no config
pkg_check_modules(UCX IMPORTED_TARGET ucx)
if(DSRT_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
