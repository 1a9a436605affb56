# CUDA is optional. DSRT_CUDA=AUTO (default) enables it when a CUDA toolkit is found,
# ON requires it, OFF never uses it. The result is DSRT_HAVE_CUDA (ON/OFF).
set(DSRT_CUDA "AUTO" CACHE STRING "Build the CUDA backend: AUTO, ON or OFF")
set_property(CACHE DSRT_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${DSRT_CUDA}" _dsrt_cuda)
set(DSRT_HAVE_CUDA OFF)

if(NOT _dsrt_cuda STREQUAL "OFF")
  # Point the probe at the usual toolkit location through the environment: setting
  # CMAKE_CUDA_COMPILER itself would make check_language skip its test compile, and an nvcc
  # that cannot build would then fail the configure instead of falling back to the CPU.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(ENV{CUDACXX} /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # sm_80 and sm_90a SASS plus compute_90 PTX for newer GPUs.
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80-real 90a-real 90-virtual)
    endif()
    enable_language(CUDA)
    # Debian 12's CMake (3.25) knows nvcc's flags up to C++17 only; nvcc 12 and later take
    # -std=c++20, which the CUDA sources (templated lambdas) need.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    find_package(CUDAToolkit REQUIRED)
    set(DSRT_HAVE_CUDA ON)
  elseif(_dsrt_cuda STREQUAL "ON")
    message(FATAL_ERROR "DSRT_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  else()
    message(STATUS "dsrt: no CUDA toolkit found, building the CPU backend only")
  endif()
endif()
