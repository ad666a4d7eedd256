# Optional CUDA backend (DESIGN.md §5), included by the top-level CMakeLists.txt after the library
# targets exist.
#
# With a CUDA compiler found (and BITTTT_CUDA on, the default), src/kernels/cuda/*.cu|*.cpp become
# the object library bitttt_cuda, linked into libbitttt (shared and static) with the static CUDA
# runtime, and BITTTT_HAS_CUDA=1 is defined for everything that links libbitttt. Without one,
# nothing CUDA is built and the rest of the engine builds as before. The GPU need not be present:
# the kernels compile for sm_90 (Hopper) plus PTX for newer GPUs; GPU tests skip without a GPU.
option(BITTTT_CUDA "Build the CUDA backend when a CUDA compiler is found" ON)

set(BITTTT_HAS_CUDA OFF)
if(BITTTT_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # One real architecture keeps the build short; the PTX of compute_90 runs on newer GPUs.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(BITTTT_HAS_CUDA ON)
  else()
    message(STATUS "bitttt: no CUDA compiler found: building without the CUDA backend")
  endif()
endif()

if(BITTTT_HAS_CUDA)
  # CMake 3.25 does not know nvcc 13's C++20 flag; the kernels need only C++17.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
  file(GLOB BITTTT_CUDA_SOURCES CONFIGURE_DEPENDS
    ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cu ${CMAKE_SOURCE_DIR}/src/kernels/cuda/*.cpp)
  add_library(bitttt_cuda OBJECT ${BITTTT_CUDA_SOURCES})
  target_include_directories(bitttt_cuda PUBLIC ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
  # cuBLAS (shared) for the dense products of GPU training (src/kernels/cuda/train_model.cpp).
  target_link_libraries(bitttt_cuda PUBLIC CUDA::cudart_static CUDA::cublas CUDA::cublasLt fmt::fmt)
  set(BITTTT_CUDA_WARNINGS -Xcompiler=-Wall,-Wextra)
  if(BITTTT_WERROR)
    list(APPEND BITTTT_CUDA_WARNINGS -Werror=all-warnings -Xcompiler=-Werror)
  endif()
  target_compile_options(bitttt_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${BITTTT_WARNINGS}>
    $<$<COMPILE_LANGUAGE:CUDA>:${BITTTT_CUDA_WARNINGS}>)
  # Objects of an OBJECT library reach only the targets that link it directly.
  # The libraries were created before CUDA was enabled: give them the CUDA settings too.
  set_target_properties(bitttt_shared bitttt_static PROPERTIES
    CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}" CUDA_STANDARD 17)
  target_link_libraries(bitttt_shared PUBLIC bitttt_cuda)
  target_link_libraries(bitttt_static PUBLIC bitttt_cuda)
  target_compile_definitions(bitttt_objects PUBLIC BITTTT_HAS_CUDA=1)
  if(BITTTT_BUILD_TESTS)
    enable_testing()
    add_subdirectory(tests/cuda)
  endif()
endif()
