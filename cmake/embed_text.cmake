# Run as a script (cmake -P) by sirena_embed_text(): writes OUT, a C++ header with one
#   inline constexpr std::string_view <stem> = R"EMBED(<the file's text>)EMBED";
# per file of FILES (a ;-list), in namespace NS.
set(_text "// Generated from ${SOURCE_DIR} by cmake/embed_text.cmake: edit the files, not this.\n#pragma once\n\n#include <string_view>\n\nnamespace ${NS} {\n")
foreach(_file IN LISTS FILES)
  get_filename_component(_stem ${_file} NAME_WE)
  file(READ ${_file} _content)
  string(FIND "${_content}" ")EMBED\"" _clash)
  if(NOT _clash EQUAL -1)
    message(FATAL_ERROR "${_file} contains the raw string's end marker )EMBED\"")
  endif()
  string(APPEND _text "\ninline constexpr std::string_view ${_stem} = R\"EMBED(${_content})EMBED\";\n")
endforeach()
string(APPEND _text "\n}  // namespace ${NS}\n")
file(WRITE ${OUT}.tmp "${_text}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
