# sirena_directory: recipients and zones in Redis, the per-tenant indexes and resolution.
# Included from daemon/CMakeLists.txt, after the directory's geo and recipient libraries.
add_library(sirena_directory STATIC ${CMAKE_CURRENT_LIST_DIR}/directory.cc)
target_link_libraries(sirena_directory PUBLIC sirena_geo sirena_recipient sirena_store sirena_alerts sirena_config)
