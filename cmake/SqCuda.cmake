# CUDA is optional. AUTO enables it when a CUDA compiler is found (nvcc is installed on the dev and
# CI machines, which have no GPU: the backend compiles there and its tests skip at run time).
set(SQ_WITH_CUDA OFF)
if(NOT SQ_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # 80 = Ampere (A100), 89 = Ada, 90a = Hopper (H100/H200; wgmma needs the "a" variant).
      set(CMAKE_CUDA_ARCHITECTURES 80 89 90a)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 does not know nvcc's C++20 flag
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(SQ_WITH_CUDA ON)
  elseif(SQ_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SQ_CUDA=ON but no CUDA compiler was found; install the CUDA toolkit or use -DSQ_CUDA=OFF")
  endif()
endif()
message(STATUS "smoothquant: CUDA backend ${SQ_WITH_CUDA}")
