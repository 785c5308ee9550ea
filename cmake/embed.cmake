# sirena_embed_text(<target> <namespace> <header> <files...>): the files' texts as
# std::string_view constants (named by each file's stem) in a header generated at build
# time, <header> relative to the build's generated/ folder, which <target> may include.
# The files stay readable source (the dispatcher's Lua scripts are .lua files).
function(sirena_embed_text target namespace header)
  set(_out ${CMAKE_BINARY_DIR}/generated/${header})
  set(_files)
  foreach(_f IN LISTS ARGN)
    list(APPEND _files ${CMAKE_CURRENT_SOURCE_DIR}/${_f})
  endforeach()
  file(RELATIVE_PATH _from ${CMAKE_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  add_custom_command(
    OUTPUT ${_out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${_out} -DNS=${namespace} -DSOURCE_DIR=${_from}
            "-DFILES=${_files}" -P ${CMAKE_SOURCE_DIR}/cmake/embed_text.cmake
    DEPENDS ${_files} ${CMAKE_SOURCE_DIR}/cmake/embed_text.cmake
    COMMENT "Embedding ${header}"
    VERBATIM)
  target_sources(${target} PRIVATE ${_out})
  target_include_directories(${target} PRIVATE ${CMAKE_BINARY_DIR}/generated)
endfunction()
