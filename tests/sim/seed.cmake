# The seeds' scenarios, one ctest entry per named case (cmocka filter).
foreach(prog seed_duet seed_mesh)
  add_executable(${prog} ${CMAKE_CURRENT_LIST_DIR}/${prog}.c)
  target_link_libraries(${prog} PRIVATE slotnet_sim slotnet_core PkgConfig::CMOCKA)
  target_include_directories(${prog} PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
endforeach()
foreach(case
    row01_push_flushes_now row02_write_returns_accepted_count row03_full_buffer_no_spin
    row04_enomem_is_retryable row05_partial_write_keeps_connection
    row06_stack_abort_is_other_end_closed row07_silence_is_not_an_error
    row08_connect_failure_reported row09_status_of_dead_connection
    row10_terminate_without_listener row11_allocate_never_waits
    row12_listener_stop_keeps_connections row13_stopped_listener_entry_reused
    row14_rejected_connections_drained row15_report_names_every_state
    cp1_browser_rst_frees_slot cp2_close_makes_no_backend_call
    cp3_stack_abort_while_closing cp4_timeout_frees_with_rst cp5_one_close_from_poll)
  add_test(NAME duet.${case} COMMAND seed_duet test_${case})
  set_tests_properties(duet.${case} PROPERTIES LABELS "sim;seed" TIMEOUT 120)
endforeach()
foreach(case
    spacing_timeline burst_of_ten wraparound no_scheduler release_queue_full
    retry_backoff_and_block policy_clamped late_success_ignored)
  add_test(NAME mesh.${case} COMMAND seed_mesh test_mesh_${case})
  set_tests_properties(mesh.${case} PROPERTIES LABELS "sim;seed" TIMEOUT 120)
endforeach()
