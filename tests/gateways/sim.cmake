# The gateway simulators (gateways/sim): socket-free unit tests of the protocol handlers,
# fault plan and ledger, and integration tests that start `sirena-sim` on ephemeral
# ports and talk to it with libcurl (h2c prior knowledge, TLS+ALPN h2, HTTP/1.1).
# Included by tests/gateways/CMakeLists.txt.
add_executable(sim_test ${CMAKE_CURRENT_LIST_DIR}/sim_test.cc)
target_link_libraries(sim_test PRIVATE sirena_sim sirena_test_support GTest::gtest_main CURL::libcurl
                      OpenSSL::Crypto)
add_dependencies(sim_test sirena-sim)
gtest_discover_tests(sim_test PROPERTIES LABELS integration TIMEOUT 120 DISCOVERY_TIMEOUT 30)
