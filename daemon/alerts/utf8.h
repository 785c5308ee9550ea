// UTF-8 well-formedness (RFC 3629 §4), shared by the XML and JSON intake paths so
// that both report `invalid_utf8` with the same byte offset; and the XML 1.0 Char
// production, so that every stored field can be written back into CAP XML.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace sirena::alerts {

// Returns the offset of the first byte that does not start a well-formed UTF-8
// sequence (overlong forms, surrogates and code points above U+10FFFF included),
// or nullopt when the whole input is valid.
inline std::optional<size_t> find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return std::nullopt;
}

// Returns the byte offset of the first character that XML 1.0 does not allow (§2.2
// Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]), i.e.
// the C0 controls other than tab, LF and CR, surrogates, U+FFFE and U+FFFF; or
// nullopt. A byte that is not well-formed UTF-8 counts as not allowed. Such
// characters cannot appear in any CAP document, so a field holding one could never
// be written into the alert's Cancel or the public feed.
inline std::optional<size_t> find_non_xml_char(std::string_view s) {
  if (std::optional<size_t> bad = find_invalid_utf8(s)) return bad;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = p[i];
    if (c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D) return i;
    // U+FFFE and U+FFFF are EF BF BE and EF BF BF (surrogates were refused above).
    if (c == 0xEF && i + 2 < s.size() && p[i + 1] == 0xBF && (p[i + 2] == 0xBE || p[i + 2] == 0xBF)) return i;
  }
  return std::nullopt;
}

}  // namespace sirena::alerts
