// libFuzzer target: parse_ndjson on arbitrary bytes. It must return (no crash, UB,
// exception or out-of-bounds read: simdjson reads past each line, which must be the
// padded copy, never the body). Every result is checked: line numbers increase
// within the body's line count; a rejected line carries a 422 with a known code; an
// accepted recipient is normalised (E.164 phone, lower-case APNs token) and
// round-trips through recipient_to_json and parse_recipient unchanged.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "daemon/directory/recipient.h"

namespace {

const sirena::directory::RecipientRules& rules() {
  static const sirena::directory::RecipientRules r = [] {
    sirena::directory::RecipientRules out;
    out.topics = sirena::directory::cap_categories();
    out.topics.push_back("viabilita");
    out.zones = {"soliera-centro", "sozzigalli", "limidi"};
    return out;
  }();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sirena;
  using namespace sirena::directory;
  // An exact-size heap copy, so that AddressSanitizer sees any read past the end.
  const std::string copy(reinterpret_cast<const char*>(data), size);
  const std::string_view body(copy);
  size_t lines = 1;
  for (char c : body) lines += c == '\n';
  size_t last = 0;
  parse_ndjson(body, rules(), [&](size_t line, Result<Recipient>&& r) {
    if (line <= last || line > lines) __builtin_trap();
    last = line;
    if (!r.ok()) {
      const Error& e = r.error();
      if (e.kind != ErrorKind::Invalid || e.message.empty()) __builtin_trap();
      if (e.code != "invalid_recipient" && e.code != "malformed_json") __builtin_trap();
      return;
    }
    const Recipient& rec = *r;
    if (rec.id.empty() || rec.id.size() > 64) __builtin_trap();
    if (!rec.phone.empty() && rec.phone[0] != '+') __builtin_trap();
    for (const PushToken& t : rec.push) {
      if (t.platform == Platform::Apns) {
        for (char c : t.token) {
          if (c >= 'A' && c <= 'F') __builtin_trap();
        }
      }
    }
    const nlohmann::json j = recipient_to_json(rec);
    Result<Recipient> back = parse_recipient(j.dump(), rules());
    if (!back.ok() || recipient_to_json(*back) != j) __builtin_trap();
  });
  return 0;
}
