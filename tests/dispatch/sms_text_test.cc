// Unit tests of SMS text (sms_text.h): the GSM 03.38 tables (3GPP TS 23.038 §6.2.1),
// UCS-2 counting in UTF-16 units, segment boundaries (160/153, 70/67) including
// characters that cannot straddle a part, fitting with an ellipsis, and rendering of a
// CAP info block with the Test/Exercise marker.
#include "daemon/dispatch/sms_text.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "daemon/alerts/utf8.h"

namespace sirena::dispatch {
namespace {

std::string repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

void expect_count(std::string_view text, SmsEncoding enc, size_t units, size_t segments) {
  const SmsCount c = count_sms(text);
  EXPECT_EQ(c.encoding, enc) << text;
  EXPECT_EQ(c.units, units) << text;
  EXPECT_EQ(c.segments, segments) << text;
}

bool valid_utf8(std::string_view s) {
  return !alerts::find_invalid_utf8(s).has_value();
}

// Every character of the default alphabet, TS 23.038 §6.2.1, except ESC (0x1B).
const char* const kGsmBasic =
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

TEST(SmsCount, EncodingNames) {
  EXPECT_STREQ(to_string(SmsEncoding::Gsm7), "GSM-7");
  EXPECT_STREQ(to_string(SmsEncoding::Ucs2), "UCS-2");
}

TEST(SmsCount, EmptyTextHasNoSegment) {
  expect_count("", SmsEncoding::Gsm7, 0, 0);
}

TEST(SmsCount, WholeDefaultAlphabetIsOneSeptetEach) {
  // 127 characters: the 128 septets minus ESC.
  expect_count(kGsmBasic, SmsEncoding::Gsm7, 127, 1);
}

TEST(SmsCount, ExtensionTableCountsTwo) {
  for (const char* c : {"\f", "^", "{", "}", "\\", "[", "~", "]", "|", "€"})
    expect_count(c, SmsEncoding::Gsm7, 2, 1);
  expect_count("Costo 5€ [circa]", SmsEncoding::Gsm7, 19, 1);
}

TEST(SmsCount, CharactersOutsideGsm7MakeTheMessageUcs2) {
  // Each of these looks GSM-like but is not in the tables: capital E grave, lower-case
  // c cedilla (only the capital is there), backtick, Greek capital Alpha (only the
  // Greek letters without a Latin look-alike are), curly quotes, the ellipsis, NBSP.
  for (const char* c : {"È", "ç", "`", "Α", "’", "“", "…", "\xC2\xA0", "á", "ê", "Ì", "ő"}) {
    expect_count(std::string("a") + c, SmsEncoding::Ucs2, 2, 1);
  }
  expect_count("È in arrivo la piena", SmsEncoding::Ucs2, 20, 1);
  expect_count("è in arrivo la piena; città, perché, più, però", SmsEncoding::Gsm7, 46, 1);
}

TEST(SmsCount, Gsm7Boundaries) {
  expect_count(repeat("a", 160), SmsEncoding::Gsm7, 160, 1);
  expect_count(repeat("a", 161), SmsEncoding::Gsm7, 161, 2);
  expect_count(repeat("a", 306), SmsEncoding::Gsm7, 306, 2);  // 153 * 2
  expect_count(repeat("a", 307), SmsEncoding::Gsm7, 307, 3);
  expect_count(repeat("a", 459), SmsEncoding::Gsm7, 459, 3);
  expect_count(repeat("a", 460), SmsEncoding::Gsm7, 460, 4);
}

TEST(SmsCount, ExtensionCharactersAtTheBoundary) {
  expect_count(repeat("a", 158) + "€", SmsEncoding::Gsm7, 160, 1);
  expect_count(repeat("a", 159) + "€", SmsEncoding::Gsm7, 161, 2);
  expect_count(repeat("a", 159) + "^", SmsEncoding::Gsm7, 161, 2);
  expect_count(repeat("€", 80), SmsEncoding::Gsm7, 160, 1);
  expect_count(repeat("€", 81), SmsEncoding::Gsm7, 162, 2);
  // 306 septets would be two parts, but the escape pair cannot straddle them: part 1
  // takes 152, part 2 takes "€" + 151, and the last "a" needs a third part.
  expect_count(repeat("a", 152) + "€" + repeat("a", 152), SmsEncoding::Gsm7, 306, 3);
  // With the pair fully inside part 1 the same length takes two.
  expect_count(repeat("a", 151) + "€" + repeat("a", 153), SmsEncoding::Gsm7, 306, 2);
}

TEST(SmsCount, Ucs2Boundaries) {
  expect_count(repeat("È", 70), SmsEncoding::Ucs2, 70, 1);
  expect_count(repeat("È", 71), SmsEncoding::Ucs2, 71, 2);
  expect_count(repeat("È", 134), SmsEncoding::Ucs2, 134, 2);  // 67 * 2
  expect_count(repeat("È", 135), SmsEncoding::Ucs2, 135, 3);
  // One UCS-2 character anywhere makes GSM characters count as UCS-2 units too.
  expect_count(repeat("a", 69) + "È", SmsEncoding::Ucs2, 70, 1);
  expect_count(repeat("a", 70) + "È", SmsEncoding::Ucs2, 71, 2);
  expect_count(repeat("{", 70), SmsEncoding::Gsm7, 140, 1);
  expect_count(repeat("{", 69) + "È", SmsEncoding::Ucs2, 70, 1);  // extension chars are 1 unit in UCS-2
}

TEST(SmsCount, EmojiCountTwoUnitsAndStayWhole) {
  expect_count("🌊", SmsEncoding::Ucs2, 2, 1);
  expect_count(repeat("a", 68) + "🌊", SmsEncoding::Ucs2, 70, 1);
  expect_count(repeat("a", 69) + "🌊", SmsEncoding::Ucs2, 71, 2);
  expect_count(repeat("🌊", 35), SmsEncoding::Ucs2, 70, 1);
  // The surrogate pair cannot straddle parts: 66 + pair + 66 = 134 units in 3 parts.
  expect_count(repeat("È", 66) + "🌊" + repeat("È", 66), SmsEncoding::Ucs2, 134, 3);
  expect_count(repeat("È", 65) + "🌊" + repeat("È", 67), SmsEncoding::Ucs2, 134, 2);
}

TEST(SmsCount, InvalidUtf8BecomesReplacementCharacters) {
  expect_count("abc\xFF", SmsEncoding::Ucs2, 4, 1);
  expect_count("\xE2\x82", SmsEncoding::Ucs2, 1, 1);  // truncated euro: one maximal subpart
  expect_count(
      "\xE2\x82"
      "a",
      SmsEncoding::Ucs2, 2, 1);
  expect_count("\xC0\x80", SmsEncoding::Ucs2, 2, 1);          // overlong NUL
  expect_count("\xED\xA0\x80", SmsEncoding::Ucs2, 3, 1);      // an encoded surrogate
  expect_count("\xF4\x90\x80\x80", SmsEncoding::Ucs2, 4, 1);  // above U+10FFFF
  expect_count("\x80", SmsEncoding::Ucs2, 1, 1);
}

// --- fit_sms ----------------------------------------------------------------------------

const std::string kLongItalian =
    "Allerta rossa per piena del fiume Secchia. Evacuare subito i piani terra nelle zone A e B, "
    "salire ai piani alti, non usare l'auto, non attraversare ponti e sottopassi. Seguire le "
    "indicazioni della protezione civile e tenersi informati su radio e sito del comune.";

TEST(SmsFit, TextThatFitsIsUnchanged) {
  EXPECT_EQ(fit_sms("Piena del Secchia", 1), "Piena del Secchia");
  EXPECT_EQ(fit_sms(repeat("a", 160), 1), repeat("a", 160));
  EXPECT_EQ(fit_sms(kLongItalian, 2), kLongItalian);
  EXPECT_EQ(fit_sms("", 1), "");
}

TEST(SmsFit, Gsm7CutsAtAWordAndEndsWithThreeDots) {
  ASSERT_EQ(count_sms(kLongItalian).encoding, SmsEncoding::Gsm7);
  ASSERT_GT(count_sms(kLongItalian).segments, 1u);
  const std::string fitted = fit_sms(kLongItalian, 1);
  const SmsCount c = count_sms(fitted);
  EXPECT_EQ(c.encoding, SmsEncoding::Gsm7);
  EXPECT_EQ(c.segments, 1u);
  EXPECT_GE(c.units, 150u);  // not cut much earlier than needed
  ASSERT_GE(fitted.size(), 3u);
  EXPECT_EQ(fitted.substr(fitted.size() - 3), "...");
  const std::string kept = fitted.substr(0, fitted.size() - 3);
  EXPECT_EQ(kLongItalian.compare(0, kept.size(), kept), 0);  // a prefix of the text
  EXPECT_EQ(kLongItalian[kept.size()], ' ') << fitted;       // ending where a word ends
  EXPECT_EQ(fitted,
            "Allerta rossa per piena del fiume Secchia. Evacuare subito i piani terra nelle zone A e B, "
            "salire ai piani alti, non usare l'auto, non attraversare ponti e...");
}

TEST(SmsFit, TrailingPunctuationIsDroppedBeforeTheEllipsis) {
  const std::string text = repeat("a", 150) + ", bbbbbbbbbb cccc";
  EXPECT_EQ(fit_sms(text, 1), repeat("a", 150) + "...");
}

TEST(SmsFit, Ucs2EndsWithTheEllipsisCharacter) {
  const std::string text = "È " + kLongItalian;
  const std::string fitted = fit_sms(text, 2);
  const SmsCount c = count_sms(fitted);
  EXPECT_EQ(c.encoding, SmsEncoding::Ucs2);
  EXPECT_EQ(c.segments, 2u);
  EXPECT_GE(c.units, 125u);
  EXPECT_EQ(fitted.substr(fitted.size() - 3), "…");
  // Cut where a word ends (here the "," after it is dropped too).
  const char next = text[fitted.size() - 3];
  EXPECT_TRUE(next == ' ' || next == ',' || next == '.') << fitted;
}

TEST(SmsFit, CuttingNeverChangesTheEncoding) {
  // The only UCS-2 character is at the end and is cut away: "…" keeps it UCS-2, so
  // the count seen in preview stays the one sent.
  const std::string text = repeat("parola ", 30) + "È";
  const std::string fitted = fit_sms(text, 1);
  EXPECT_EQ(count_sms(fitted).encoding, SmsEncoding::Ucs2);
  EXPECT_LE(count_sms(fitted).units, 70u);
  // And a GSM-7 text never gets the UCS-2 "…".
  EXPECT_EQ(count_sms(fit_sms(repeat("parola ", 60), 1)).encoding, SmsEncoding::Gsm7);
}

TEST(SmsFit, NeverSplitsAMultiByteCharacter) {
  for (const std::string& unit : {std::string("È"), std::string("🌊"), std::string("€"), std::string("中文"),
                                  std::string("aÈ"), std::string("a🌊")}) {
    for (size_t n : {50u, 100u, 200u, 500u}) {
      const std::string text = repeat(unit, n);
      for (size_t max : {1u, 2u, 3u}) {
        const std::string fitted = fit_sms(text, max);
        EXPECT_TRUE(valid_utf8(fitted)) << unit << " x" << n << " in " << max;
        EXPECT_LE(count_sms(fitted).segments, max) << unit << " x" << n;
        EXPECT_EQ(count_sms(fitted).encoding, count_sms(text).encoding);
        const std::string ellipsis = count_sms(text).encoding == SmsEncoding::Gsm7 ? "..." : "…";
        if (fitted != text) {
          EXPECT_EQ(
              text.compare(0, fitted.size() - ellipsis.size(), fitted, 0, fitted.size() - ellipsis.size()),
              0);
        }
      }
    }
  }
}

TEST(SmsFit, ExtensionCharactersAreNotSplit) {
  // 81 euro signs are 162 septets: the cut keeps whole ESC pairs.
  const std::string fitted = fit_sms(repeat("€", 81), 1);
  EXPECT_EQ(fitted, repeat("€", 78) + "...");  // 156 + 3 = 159: a 79th pair would need 161
  EXPECT_EQ(count_sms(fitted).segments, 1u);
  // Surrogate pairs: 36 waves are 72 units; 34 waves + "…" = 69 is the most that fits.
  const std::string waves = fit_sms(repeat("🌊", 36), 1);
  EXPECT_EQ(waves, repeat("🌊", 34) + "…");  // 68 + 1 = 69 units
}

TEST(SmsFit, ALongWordIsCutHard) {
  const std::string url = "Info: https://" + repeat("x", 300);
  const std::string fitted = fit_sms(url, 1);
  EXPECT_EQ(count_sms(fitted).units, 160u);
  EXPECT_EQ(fitted.substr(0, 14), "Info: https://");
}

TEST(SmsFit, ZeroSegmentsIsEmpty) {
  EXPECT_EQ(fit_sms("anything", 0), "");
}

// --- render_sms -------------------------------------------------------------------------

alerts::Alert alert_with(alerts::Status status) {
  alerts::Alert a;
  a.identifier = "SOLIERA-2024-001";
  a.status = status;
  return a;
}

alerts::Info info_with(std::string language, std::string headline, std::string instruction) {
  alerts::Info i;
  i.language = std::move(language);
  i.categories = {"Met"};
  i.event = "Piena fluviale";
  i.headline = std::move(headline);
  i.instruction = std::move(instruction);
  return i;
}

TEST(SmsRender, HeadlineAndInstruction) {
  const alerts::Alert a = alert_with(alerts::Status::Actual);
  SmsPolicy policy;
  EXPECT_EQ(render_sms(a, info_with("it-IT", "Piena del Secchia", "Salire ai piani alti"), policy),
            "Piena del Secchia. Salire ai piani alti");
  // No doubled punctuation when the headline ends a sentence already.
  EXPECT_EQ(render_sms(a, info_with("it-IT", "Piena del Secchia!", "Salire ai piani alti."), policy),
            "Piena del Secchia! Salire ai piani alti.");
  EXPECT_EQ(render_sms(a, info_with("it-IT", "Piena del Secchia.", "Salire"), policy),
            "Piena del Secchia. Salire");
  EXPECT_EQ(render_sms(a, info_with("it-IT", "Allerta:", "salire"), policy), "Allerta: salire");
  // Empty parts are skipped.
  EXPECT_EQ(render_sms(a, info_with("it-IT", "Piena del Secchia", ""), policy), "Piena del Secchia");
  EXPECT_EQ(render_sms(a, info_with("it-IT", "  ", "Salire ai piani alti"), policy), "Salire ai piani alti");
  // Without either, the event says what happens.
  EXPECT_EQ(render_sms(a, info_with("it-IT", "", ""), policy), "Piena fluviale");
}

TEST(SmsRender, WhitespaceFromCapIsCollapsed) {
  const alerts::Alert a = alert_with(alerts::Status::Actual);
  EXPECT_EQ(
      render_sms(a, info_with("en", "  Flood\n warning ", "Move\n\n   to  higher\tground\n"), SmsPolicy{}),
      "Flood warning. Move to higher ground");
}

TEST(SmsRender, PreparedTextParameter) {
  const alerts::Alert a = alert_with(alerts::Status::Actual);
  alerts::Info info = info_with("it", "Titolo", "Istruzione");
  info.parameters = {{"layer:other", "x"}, {"sms_text", "  Testo SMS preparato  "}, {"sms_text", "secondo"}};
  SmsPolicy policy;
  policy.text_parameter = "sms_text";
  EXPECT_EQ(render_sms(a, info, policy), "Testo SMS preparato");
  // Not named by the policy: ignored.
  EXPECT_EQ(render_sms(a, info, SmsPolicy{}), "Titolo. Istruzione");
  // Named but absent or blank: headline and instruction.
  policy.text_parameter = "sms";
  EXPECT_EQ(render_sms(a, info, policy), "Titolo. Istruzione");
  info.parameters = {{"sms", " "}};
  EXPECT_EQ(render_sms(a, info, policy), "Titolo. Istruzione");
}

TEST(SmsRender, TestAndExerciseMarkers) {
  const alerts::Info it = info_with("it-IT", "Piena del Secchia", "Salire ai piani alti");
  const alerts::Info en = info_with("en-US", "Secchia flood", "Move upstairs");
  const SmsPolicy policy;
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Exercise), it, policy),
            "[ESERCITAZIONE] Piena del Secchia. Salire ai piani alti");
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Exercise), en, policy),
            "[EXERCISE] Secchia flood. Move upstairs");
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Test), it, policy),
            "[TEST] Piena del Secchia. Salire ai piani alti");
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Test), en, policy), "[TEST] Secchia flood. Move upstairs");
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Actual), it, policy),
            "Piena del Secchia. Salire ai piani alti");
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Exercise), info_with("it", "A", ""), policy),
            "[ESERCITAZIONE] A");
  // "italic" is not Italian: only the "it" subtag counts.
  EXPECT_EQ(render_sms(alert_with(alerts::Status::Exercise), info_with("ita", "A", ""), policy),
            "[EXERCISE] A");
}

TEST(SmsRender, MarkerSurvivesFitting) {
  SmsPolicy policy;
  policy.max_segments = 1;
  const alerts::Info info = info_with("it-IT", "Allerta rossa per piena del fiume Secchia", kLongItalian);
  const std::string sms = render_sms(alert_with(alerts::Status::Exercise), info, policy);
  EXPECT_EQ(sms.rfind("[ESERCITAZIONE] Allerta rossa", 0), 0u) << sms;
  EXPECT_EQ(sms.substr(sms.size() - 3), "...");
  const SmsCount c = count_sms(sms);
  EXPECT_EQ(c.segments, 1u);
  EXPECT_EQ(c.encoding, SmsEncoding::Gsm7);
  EXPECT_GE(c.units, 150u);

  policy.max_segments = 3;
  const std::string longer = render_sms(alert_with(alerts::Status::Test), info, policy);
  EXPECT_EQ(longer.rfind("[TEST] ", 0), 0u);
  EXPECT_LE(count_sms(longer).segments, 3u);
}

TEST(SmsRender, ItalianCapitalEGraveGoesUcs2) {
  const alerts::Alert a = alert_with(alerts::Status::Actual);
  const std::string upper =
      render_sms(a, info_with("it", "È in arrivo la piena del Secchia", "Salire ai piani alti"), SmsPolicy{});
  EXPECT_EQ(count_sms(upper).encoding, SmsEncoding::Ucs2);
  const std::string lower =
      render_sms(a, info_with("it", "è in arrivo la piena del Secchia", "Salire ai piani alti"), SmsPolicy{});
  EXPECT_EQ(count_sms(lower).encoding, SmsEncoding::Gsm7);
  EXPECT_EQ(count_sms(lower).units, 54u);
}

TEST(SmsRender, UsesThePolicyMaximum) {
  SmsPolicy policy;
  policy.max_segments = 2;
  const alerts::Info info = info_with("it", repeat("parola ", 100), "");
  const std::string sms = render_sms(alert_with(alerts::Status::Actual), info, policy);
  EXPECT_EQ(count_sms(sms).segments, 2u);
  EXPECT_GE(count_sms(sms).units, 300u);
}

}  // namespace
}  // namespace sirena::dispatch
