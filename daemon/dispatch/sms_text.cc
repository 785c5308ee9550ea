// SMS text: encoding detection, segment counting and fitting per 3GPP TS 23.038
// (GSM 03.38) and TS 23.040, and the rendering of one CAP info block into SMS text.
//
// Counting works on Unicode scalar values decoded from UTF-8 here (RFC 3629), each
// with its cost: 1 septet for the GSM 7-bit default alphabet (TS 23.038 §6.2.1),
// 2 for the extension table (§6.2.1.1: the ESC septet 0x1B plus the character), or
// 1-2 UTF-16 code units in UCS-2. A message is GSM-7 only if every character is in one
// of the two GSM tables; a single other character makes the whole message UCS-2.
//
// Concatenated SMS (TS 23.040 §9.2.3.24.1) spend 6 octets of each part on the UDH,
// leaving 153 septets or 67 UCS-2 units. Parts are filled greedily and a character is
// never split across parts: not an ESC pair (a lone ESC at the end of a part would be
// shown as a space or a wrong character) nor a UTF-16 surrogate pair (phones show
// two replacement characters). So a text whose units fit 153*k can still need k+1
// parts when an extension character or an astral character straddles a boundary.
//
// Markers (render_sms): a Test or Exercise alert starts with "[TEST] " or
// "[ESERCITAZIONE] " (info language starting with "it") / "[EXERCISE] " (any other
// language), in square brackets and upper case so that it stands out on a lock screen
// and is pure GSM-7 (it never forces UCS-2). Fitting cuts the body, never the marker.
#include "daemon/dispatch/sms_text.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace sirena::dispatch {

const char* to_string(SmsEncoding e) {
  return e == SmsEncoding::Gsm7 ? "GSM-7" : "UCS-2";
}

namespace {

constexpr size_t kGsm7Single = 160;  // TS 23.040 §9.2.3.16: 140 octets = 160 septets
constexpr size_t kGsm7Part = 153;    // 140 - 6 octets of UDH (8-bit concatenation IE) = 134 octets
constexpr size_t kUcs2Single = 70;   // 140 octets / 2
constexpr size_t kUcs2Part = 67;     // 134 octets / 2

constexpr char32_t kReplacement = 0xFFFD;

// The GSM 7-bit default alphabet, TS 23.038 §6.2.1, indexed by septet value.
// 0x1B is the escape to the extension table and is not a character of its own.
constexpr std::array<char32_t, 128> kGsmBasic = {
    U'@', U'£', U'$',  U'¥',   U'è', U'é',  U'ù', U'ì',   // 0x00
    U'ò', U'Ç', U'\n', U'Ø',   U'ø', U'\r', U'Å', U'å',   // 0x08
    U'Δ', U'_', U'Φ',  U'Γ',   U'Λ', U'Ω',  U'Π', U'Ψ',   // 0x10
    U'Σ', U'Θ', U'Ξ',  0xFFFF, U'Æ', U'æ',  U'ß', U'É',   // 0x18 (0x1B = ESC)
    U' ', U'!', U'"',  U'#',   U'¤', U'%',  U'&', U'\'',  // 0x20
    U'(', U')', U'*',  U'+',   U',', U'-',  U'.', U'/',   // 0x28
    U'0', U'1', U'2',  U'3',   U'4', U'5',  U'6', U'7',   // 0x30
    U'8', U'9', U':',  U';',   U'<', U'=',  U'>', U'?',   // 0x38
    U'¡', U'A', U'B',  U'C',   U'D', U'E',  U'F', U'G',   // 0x40
    U'H', U'I', U'J',  U'K',   U'L', U'M',  U'N', U'O',   // 0x48
    U'P', U'Q', U'R',  U'S',   U'T', U'U',  U'V', U'W',   // 0x50
    U'X', U'Y', U'Z',  U'Ä',   U'Ö', U'Ñ',  U'Ü', U'§',   // 0x58
    U'¿', U'a', U'b',  U'c',   U'd', U'e',  U'f', U'g',   // 0x60
    U'h', U'i', U'j',  U'k',   U'l', U'm',  U'n', U'o',   // 0x68
    U'p', U'q', U'r',  U's',   U't', U'u',  U'v', U'w',   // 0x70
    U'x', U'y', U'z',  U'ä',   U'ö', U'ñ',  U'ü', U'à',   // 0x78
};

// The extension table, TS 23.038 §6.2.1.1: characters sent as ESC (0x1B) + septet.
// 0x0A is FORM FEED (a page break); 0x0D (CR2) and 0x1B (SS2) are control codes
// without a Unicode character, and the national language tables are not used.
constexpr std::array<char32_t, 10> kGsmExtension = {U'\f', U'^', U'{', U'}', U'\\',
                                                    U'[',  U'~', U']', U'|', U'€'};

// Cost of one character in septets: 1 (default alphabet), 2 (extension), 0 (not GSM).
// Built once: a 0x0000-0x20AC lookup would waste memory, so it is a small table for
// Latin-1 plus a scan of the few higher code points (Greek capitals and the euro).
uint8_t gsm_septets(char32_t c) {
  static const std::array<uint8_t, 256> kLatin1 = [] {
    std::array<uint8_t, 256> t{};
    for (char32_t b : kGsmBasic) {
      if (b < 256) t[b] = 1;
    }
    for (char32_t e : kGsmExtension) {
      if (e < 256) t[e] = 2;
    }
    return t;
  }();
  if (c < 256) return kLatin1[c];
  for (char32_t b : kGsmBasic) {
    if (b == c && b != 0xFFFF) return 1;
  }
  return c == U'€' ? 2 : 0;
}

// One decoded character: where its bytes are, and what it costs in each encoding.
struct Char {
  char32_t cp = 0;
  size_t offset = 0;  // into the UTF-8 text
  size_t bytes = 0;
  uint8_t septets = 0;  // 0 when outside GSM 7-bit
  uint8_t utf16 = 1;    // 2 for a surrogate pair (above U+FFFF)
};

// RFC 3629 decoding. An ill-formed sequence becomes one U+FFFD per maximal subpart
// (Unicode §3.9, "U+FFFD substitution of maximal subparts"), which is UCS-2.
std::vector<Char> decode(std::string_view s) {
  std::vector<Char> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    Char ch;
    ch.offset = i;
    const unsigned char c = p[i];
    size_t len = 0;
    char32_t cp = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    }
    size_t used = 1;
    bool ok = len > 0;
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char b = i + k < n ? p[i + k] : 0;
      const bool in_range = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
      if (!in_range || i + k >= n) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (b & 0x3F);
      ++used;
    }
    if (!ok) cp = kReplacement;
    ch.cp = cp;
    ch.bytes = used;
    ch.septets = gsm_septets(cp);
    ch.utf16 = cp > 0xFFFF ? 2 : 1;
    out.push_back(ch);
    i += used;
  }
  return out;
}

bool all_gsm(const std::vector<Char>& chars) {
  return std::all_of(chars.begin(), chars.end(), [](const Char& c) { return c.septets != 0; });
}

size_t cost(const Char& c, SmsEncoding e) {
  return e == SmsEncoding::Gsm7 ? c.septets : c.utf16;
}

// Greedy packing into parts of `part` units, never splitting a character; one
// message of `single` units when the whole text fits it.
struct Packing {
  size_t units = 0;
  size_t segments = 0;
};

class Packer {
 public:
  explicit Packer(SmsEncoding e)
      : single_(e == SmsEncoding::Gsm7 ? kGsm7Single : kUcs2Single),
        part_(e == SmsEncoding::Gsm7 ? kGsm7Part : kUcs2Part) {}

  void add(size_t c) {
    units_ += c;
    if (used_ == 0 || used_ + c > part_) {
      ++parts_;
      used_ = 0;
    }
    used_ += c;
  }
  Packing result() const {
    if (units_ == 0) return {0, 0};
    return {units_, units_ <= single_ ? 1 : parts_};
  }

 private:
  size_t single_, part_;
  size_t units_ = 0;
  size_t parts_ = 0;  // parts of a concatenated message
  size_t used_ = 0;   // units in the current part
};

bool is_space(char32_t c) {
  return c == U' ' || c == U'\n' || c == U'\r' || c == U'\t' || c == U'\f' || c == 0x00A0 || c == 0x2028 ||
         c == 0x3000;
}

// Characters that would read badly right before an ellipsis ("now.…", "zones A,...").
bool is_trailing_punct(char32_t c) {
  return c == U'.' || c == U',' || c == U';' || c == U':' || c == U'-' || c == 0x2026 || c == 0x2013 ||
         c == 0x2014;
}

// The longest prefix of `body` that fits `max_segments` together with `prefix` before it
// and an ellipsis after it, cut at a word boundary when there is one.
std::string fit_with_prefix(std::string_view prefix, std::string_view body, size_t max_segments) {
  std::string whole(prefix);
  whole += body;
  const std::vector<Char> all = decode(whole);
  const SmsEncoding enc = all_gsm(all) ? SmsEncoding::Gsm7 : SmsEncoding::Ucs2;
  {
    Packer p(enc);
    for (const Char& c : all) p.add(cost(c, enc));
    if (p.result().segments <= max_segments) return whole;
  }
  if (max_segments == 0) return {};

  // A GSM-7 text ends with "..." (3 septets), a UCS-2 text with U+2026 (1 unit): the
  // cut text then keeps its encoding (TS 23.038 has no ellipsis in GSM 7-bit).
  const std::string_view ellipsis = enc == SmsEncoding::Gsm7 ? "..." : "\xE2\x80\xA6";
  const std::vector<Char> tail = decode(ellipsis);
  const std::vector<Char> chars = decode(body);
  const std::vector<Char> head = decode(prefix);

  auto fits = [&](size_t k) {  // do prefix + body[0..k) + ellipsis fit?
    Packer p(enc);
    for (const Char& c : head) p.add(cost(c, enc));
    for (size_t i = 0; i < k; ++i) p.add(cost(chars[i], enc));
    for (const Char& c : tail) p.add(cost(c, enc));
    return p.result().segments <= max_segments;
  };
  // Packing is monotonic in k, so binary search for the largest k that fits.
  size_t lo = 0, hi = chars.size();
  if (!fits(0)) {
    // Not even the prefix fits: cut the prefix itself, never split a character.
    return fit_with_prefix({}, whole, max_segments);
  }
  while (lo < hi) {
    const size_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  size_t k = lo;
  // Cut at a word boundary: if the first dropped character is not a space, back up to
  // the last space. A single word longer than half the room is cut hard instead, so a
  // long URL does not empty the message.
  if (k < chars.size() && !is_space(chars[k].cp)) {
    size_t j = k;
    while (j > 0 && !is_space(chars[j - 1].cp)) --j;
    if (j > 0 && j * 2 >= k) k = j;
  }
  while (k > 0 && (is_space(chars[k - 1].cp) || is_trailing_punct(chars[k - 1].cp))) --k;
  std::string out(prefix);
  if (k > 0) out.append(body.substr(0, chars[k - 1].offset + chars[k - 1].bytes));
  // With an empty body and a prefix ending in a space, the ellipsis follows the space.
  out.append(ellipsis);
  return out;
}

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

// CAP text often carries line breaks and indentation from the authoring tool; on an
// SMS every extra space costs a septet, so runs of ASCII whitespace become one space.
std::string collapse_whitespace(std::string_view s) {
  s = trim(s);
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      space = true;
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// Whether the text already ends a sentence, so that joining adds only a space.
bool ends_sentence(std::string_view s) {
  if (s.empty()) return false;
  const char last = s.back();
  if (last == '.' || last == '!' || last == '?' || last == ':' || last == ';') return true;
  return s.size() >= 3 && s.substr(s.size() - 3) == "\xE2\x80\xA6";  // U+2026
}

bool starts_with_italian(std::string_view language) {
  return language.size() >= 2 && (language[0] == 'i' || language[0] == 'I') &&
         (language[1] == 't' || language[1] == 'T') && (language.size() == 2 || language[2] == '-');
}

}  // namespace

SmsCount count_sms(std::string_view text) {
  const std::vector<Char> chars = decode(text);
  SmsCount out;
  out.encoding = all_gsm(chars) ? SmsEncoding::Gsm7 : SmsEncoding::Ucs2;
  Packer p(out.encoding);
  for (const Char& c : chars) p.add(cost(c, out.encoding));
  const Packing r = p.result();
  out.units = r.units;
  out.segments = r.segments;
  return out;
}

std::string fit_sms(std::string_view text, size_t max_segments) {
  return fit_with_prefix({}, text, max_segments);
}

std::string render_sms(const alerts::Alert& alert, const alerts::Info& info, const SmsPolicy& policy) {
  std::string body;
  if (!policy.text_parameter.empty()) {
    // CAP 1.2 §3.2.2 <parameter>: the first one with the configured valueName and a
    // non-blank value. An operator wrote it for SMS, so only its ends are trimmed.
    for (const alerts::NameValue& p : info.parameters) {
      if (p.name == policy.text_parameter && !trim(p.value).empty()) {
        body = std::string(trim(p.value));
        break;
      }
    }
  }
  if (body.empty()) {
    const std::string headline = collapse_whitespace(info.headline);
    const std::string instruction = collapse_whitespace(info.instruction);
    body = headline;
    if (!instruction.empty()) {
      if (!body.empty()) body += ends_sentence(body) ? " " : ". ";
      body += instruction;
    }
    // Real CAP messages may lack both (headline and instruction are optional,
    // §3.2.2): the event type, then the description, still say what happens.
    if (body.empty()) body = collapse_whitespace(info.event);
    if (body.empty()) body = collapse_whitespace(info.description);
  }

  const std::string marker = drill_marker(alert, &info);
  if (marker.empty()) return fit_sms(body, policy.max_segments);
  if (body.empty()) return fit_sms(std::string(trim(marker)), policy.max_segments);
  return fit_with_prefix(marker, body, policy.max_segments);
}

std::string drill_marker(const alerts::Alert& alert, const alerts::Info* info) {
  if (alert.status == alerts::Status::Test) return "[TEST] ";
  if (alert.status == alerts::Status::Exercise)
    return info && starts_with_italian(info->language) ? "[ESERCITAZIONE] " : "[EXERCISE] ";
  return "";
}

}  // namespace sirena::dispatch
