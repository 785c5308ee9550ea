# sirena_recipient: recipient validation and NDJSON import parsing (recipient.h).
# Included from daemon/directory/CMakeLists.txt.
#
# simdjson parses import lines; libphonenumber normalises phones to E.164; ICU's uloc
# validates and canonicalises BCP 47 language tags. Debian's libphonenumber ships no
# CMake config: its headers pull in protobuf and abseil, so those are linked too.
find_package(simdjson REQUIRED)
find_package(ICU REQUIRED COMPONENTS uc)
find_library(PHONENUMBER_LIB phonenumber REQUIRED)
find_library(PROTOBUF_LIB protobuf REQUIRED)

add_library(sirena_recipient STATIC ${CMAKE_CURRENT_LIST_DIR}/recipient.cc)
target_link_libraries(sirena_recipient
  PUBLIC sirena_core nlohmann_json::nlohmann_json
  PRIVATE simdjson::simdjson ${PHONENUMBER_LIB} ${PROTOBUF_LIB} ICU::uc)
