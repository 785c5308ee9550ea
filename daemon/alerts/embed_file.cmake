# Writes OUTPUT: a C++ file defining `const unsigned char SYMBOL[]` with the bytes of
# INPUT, and `const size_t SYMBOL_size`. A byte array, not a string literal, so any
# content (")", NUL, non-UTF-8) embeds safely. Run as: cmake -DINPUT=.. -DOUTPUT=..
# -DSYMBOL=.. -P embed_file.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by embed_file.cmake. Do not edit.\n"
  "#include <cstddef>\n"
  "namespace sirena::alerts::embedded {\n"
  "extern const unsigned char ${SYMBOL}[] = {\n${bytes}0x00};\n"
  "extern const size_t ${SYMBOL}_size = ${size};\n"
  "}  // namespace sirena::alerts::embedded\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
