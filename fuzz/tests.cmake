# ctest entries for the fuzz targets (included at the end of
# tests/CMakeLists.txt, in the gcc test build). fuzz.build makes the clang
# build in <build>/fuzz with fuzz/run.sh; then per target of targets.cmake,
# fuzz.replay_NAME runs every file of fuzz/corpus/NAME once and
# fuzz.smoke_NAME fuzzes for a few seconds from it. All exit 77 (skipped)
# when clang or libFuzzer's runtime is missing.
set(SN_FUZZ_SCRIPT ${CMAKE_SOURCE_DIR}/fuzz/run.sh)
set(SN_FUZZ_BUILD ${CMAKE_BINARY_DIR}/fuzz)
set(SN_FUZZ_SMOKE_SECONDS 10 CACHE STRING "Seconds each fuzz.smoke_ test fuzzes")

add_test(NAME fuzz.build COMMAND ${SN_FUZZ_SCRIPT} build ${SN_FUZZ_BUILD})
# PROCESSORS 2: it compiles with -j2, so under ctest -j2 it runs alone
# rather than slowing the timing-sensitive tests beside it.
set_tests_properties(fuzz.build PROPERTIES FIXTURES_SETUP sn_fuzz_build SKIP_RETURN_CODE 77
                     TIMEOUT 600 LABELS fuzz PROCESSORS 2)

function(sn_fuzz_target name)
  add_test(NAME fuzz.replay_${name} COMMAND ${SN_FUZZ_SCRIPT} replay ${SN_FUZZ_BUILD} ${name})
  add_test(NAME fuzz.smoke_${name}
           COMMAND ${SN_FUZZ_SCRIPT} smoke ${SN_FUZZ_BUILD} ${name} ${SN_FUZZ_SMOKE_SECONDS})
  set_tests_properties(fuzz.replay_${name} fuzz.smoke_${name} PROPERTIES
                       FIXTURES_REQUIRED sn_fuzz_build SKIP_RETURN_CODE 77 TIMEOUT 300
                       LABELS fuzz)
endfunction()

include(${CMAKE_SOURCE_DIR}/fuzz/targets.cmake)
