# The fuzz targets, one line each:
#   sn_fuzz_target(NAME SOURCES file.c... [LIBS lib...] [ARGS -libfuzzer_flag...])
# SOURCES are relative to fuzz/ (or absolute); ARGS are passed to every run
# of the target (make fuzz, and the ctest replay and smoke). Each target has
# its seed corpus in fuzz/corpus/NAME/.
#
# Read twice: by fuzz/CMakeLists.txt in the clang build (fuzz/run.sh), where
# it makes the binaries, and by fuzz/tests.cmake in the test build, where it
# registers fuzz.replay_NAME and fuzz.smoke_NAME.
sn_fuzz_target(fuzz_link_decoder SOURCES fuzz_link_decoder.c LIBS slotnet_link
               ARGS -max_len=8192 -dict=${CMAKE_CURRENT_LIST_DIR}/fuzz_link_decoder.dict)
sn_fuzz_target(fuzz_http SOURCES fuzz_http.c ${SN_FUZZ_WEB_SOURCES}
               LIBS slotnet_sim ${SN_FUZZ_WEB_LIBS}
               ARGS -max_len=16384 -timeout=30 -dict=${CMAKE_CURRENT_LIST_DIR}/fuzz_http.dict)
sn_fuzz_target(fuzz_device SOURCES fuzz_device.c LIBS slotnet_device slotnet_sim ARGS -max_len=4096)
