# The APNs and FCM profiles (gateways/apns, gateways/fcm on gateways/push) against the real
# `sirena-sim apns|fcm` on ephemeral ports. Included by tests/gateways/CMakeLists.txt.
add_executable(push_test ${CMAKE_CURRENT_LIST_DIR}/push_test.cc)
target_link_libraries(push_test PRIVATE sirena_push sirena_sim sirena_test_support GTest::gtest_main)
target_compile_definitions(push_test PRIVATE SIRENA_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_dependencies(push_test sirena-sim)
gtest_discover_tests(push_test PROPERTIES LABELS integration TIMEOUT 120 DISCOVERY_TIMEOUT 30)
