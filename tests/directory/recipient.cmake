# Unit tests of recipient validation and NDJSON parsing. Included from
# tests/directory/CMakeLists.txt. No sockets, no Redis.
add_executable(recipient_test ${CMAKE_CURRENT_LIST_DIR}/recipient_test.cc)
target_link_libraries(recipient_test PRIVATE sirena_recipient GTest::gtest_main)
gtest_discover_tests(recipient_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
