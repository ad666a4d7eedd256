# Fuzz targets (tests/fuzz/fuzz_*.cpp, issue 9), included from tests/CMakeLists.txt.
#
# Every target defines LLVMFuzzerTestOneInput and is built two ways:
#  - always: replay_<target>, the target linked with tests/fuzz/replay_main.cpp (any compiler).
#    ctest runs it over tests/fuzz/corpus/<target> plus a few hundred seeded mutations of each
#    file, so `make test` (and the sanitizer build) exercise every reader with hostile bytes.
#  - with -DBITTTT_FUZZ=ON (clang only; `make fuzz` configures build-fuzz that way): <target>,
#    a libFuzzer binary with ASan+UBSan (BITTTT_SANITIZE is forced on) and coverage
#    instrumentation of the whole library.
option(BITTTT_FUZZ "Build the libFuzzer targets (clang)" OFF)
set(BITTTT_FUZZ_REPLAY_MUTATIONS 300 CACHE STRING "Mutations of each corpus file in the replay tests")

set(BITTTT_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)
file(GLOB BITTTT_FUZZ_SOURCES CONFIGURE_DEPENDS ${BITTTT_FUZZ_DIR}/fuzz_*.cpp)

if(BITTTT_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "BITTTT_FUZZ needs clang (libFuzzer): configure with CMAKE_CXX_COMPILER=clang++")
  endif()
  if(NOT BITTTT_SANITIZE)
    message(FATAL_ERROR "BITTTT_FUZZ needs BITTTT_SANITIZE=ON (ASan+UBSan)")
  endif()
  # Coverage feedback from the library itself; every UBSan finding is fatal (a crash libFuzzer
  # records) instead of a message that scrolls by.
  target_compile_options(bitttt_objects PRIVATE -fsanitize=fuzzer-no-link -fno-sanitize-recover=all)
endif()

foreach(src ${BITTTT_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(replay_${name} ${src} ${BITTTT_FUZZ_DIR}/replay_main.cpp)
  target_compile_options(replay_${name} PRIVATE ${BITTTT_WARNINGS})
  target_include_directories(replay_${name} PRIVATE ${BITTTT_FUZZ_DIR})
  target_link_libraries(replay_${name} PRIVATE bitttt_static)
  add_test(NAME ${name}_replay
    COMMAND replay_${name} --mutations ${BITTTT_FUZZ_REPLAY_MUTATIONS} ${BITTTT_FUZZ_DIR}/corpus/${name})
  # Passive OpenMP waits: the targets that tokenize run a parallel region per input, and a
  # worker spinning between inputs on the CI's 2 busy cores stalled the token cache's replay
  # (7 s instead of 0.2 s).
  set_tests_properties(${name}_replay PROPERTIES TIMEOUT 300 ENVIRONMENT OMP_WAIT_POLICY=passive)

  if(BITTTT_FUZZ)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer -fno-sanitize-recover=all)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    target_include_directories(${name} PRIVATE ${BITTTT_FUZZ_DIR})
    target_link_libraries(${name} PRIVATE bitttt_static)
    # A short libFuzzer run over the corpus. libFuzzer adds new inputs to the first directory it
    # is given: a scratch one in the build tree, so the repository's corpus is only read.
    set(work ${CMAKE_CURRENT_BINARY_DIR}/fuzz_work/${name})
    file(MAKE_DIRECTORY ${work})
    add_test(NAME ${name}_libfuzzer
      COMMAND ${name} -runs=2000 -max_len=65536 ${work} ${BITTTT_FUZZ_DIR}/corpus/${name})
    set_tests_properties(${name}_libfuzzer PROPERTIES ENVIRONMENT OMP_WAIT_POLICY=passive)
  endif()
endforeach()

# Writes the seed corpora (tests/fuzz/make_corpus.cpp); built on request only.
add_executable(fuzz_make_corpus EXCLUDE_FROM_ALL ${BITTTT_FUZZ_DIR}/make_corpus.cpp)
target_link_libraries(fuzz_make_corpus PRIVATE bitttt_static)
