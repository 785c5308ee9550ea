# sirena_directory: recipients and zones in Redis, the per-tenant indexes and resolution.
add_library(sirena_directory STATIC directory.cc)
target_link_libraries(sirena_directory PUBLIC sirena_geo sirena_recipient sirena_store sirena_alerts sirena_config)
