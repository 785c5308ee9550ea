# The SMS channel (gateways/sms): the libcurl engine on a real libuv loop, and the kannel and
# generic_json profiles against `sirena-sim sms` on ephemeral ports.
# Included by tests/gateways/CMakeLists.txt.
add_executable(sms_test ${CMAKE_CURRENT_LIST_DIR}/sms_test.cc)
target_link_libraries(sms_test PRIVATE sirena_sms sirena_test_support GTest::gtest_main CURL::libcurl)
add_dependencies(sms_test sirena-sim)
gtest_discover_tests(sms_test PROPERTIES LABELS integration TIMEOUT 120 DISCOVERY_TIMEOUT 30)
