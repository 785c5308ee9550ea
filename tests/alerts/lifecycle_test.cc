// The intake decision for every CAP status and message type: what may reach citizens,
// and what waits for a second person. Fails closed (issue 14, finding 3).
#include "daemon/alerts/lifecycle.h"

#include <gtest/gtest.h>

namespace sirena::alerts {
namespace {

constexpr Status kStatuses[] = {Status::Actual, Status::Exercise, Status::System, Status::Test,
                                Status::Draft};
constexpr MsgType kTypes[] = {MsgType::Alert, MsgType::Update, MsgType::Cancel, MsgType::Ack, MsgType::Error};

Alert make(Status s, MsgType m) {
  Alert a;
  a.status = s;
  a.msg_type = m;
  return a;
}

TEST(Lifecycle, OnlyAlertsAndUpdatesOfActualExerciseAndTestReachCitizens) {
  for (Status s : kStatuses)
    for (MsgType m : kTypes) {
      bool expected = (s == Status::Actual || s == Status::Exercise || s == Status::Test) &&
                      (m == MsgType::Alert || m == MsgType::Update);
      EXPECT_EQ(reaches_citizens(s, m), expected) << to_string(s) << " " << to_string(m);
    }
}

// Every status x msgType, below and above the threshold, with the demo's policy.
TEST(Lifecycle, EveryStatusAndTypeGetsTheStateItsRuleSays) {
  const std::vector<std::string> actual_only{"Actual"};
  for (Status s : kStatuses)
    for (MsgType m : kTypes)
      for (int64_t recipients : {int64_t{0}, int64_t{999}, int64_t{1000}, int64_t{13572}}) {
        std::string got = initial_state(make(s, m), actual_only, 1000, recipients);
        std::string want;
        if (s == Status::Draft)
          want = state::kDraft;
        else if (m == MsgType::Cancel)
          want = s == Status::System ? state::kRecorded : state::kAccepted;
        else if (!reaches_citizens(s, m))
          want = state::kRecorded;
        else if (s == Status::Actual && recipients >= 1000)
          want = state::kPendingApproval;
        else
          want = state::kAccepted;
        EXPECT_EQ(got, want) << to_string(s) << " " << to_string(m) << " to " << recipients;
      }
}

TEST(Lifecycle, SystemNeverReachesCitizensEvenWithAnExtremeAreaAndNoApprovalPolicy) {
  // The probe: an operator posted status=System to 13,572 citizens and it went at once.
  for (MsgType m : {MsgType::Alert, MsgType::Update})
    EXPECT_EQ(std::string(initial_state(make(Status::System, m), {"Actual"}, 1'000'000, 13572)),
              state::kRecorded);
}

TEST(Lifecycle, ActualFallsUnderThePolicyEvenWhenTheListForgetsIt) {
  // The config refuses such a list; this is the second line of defence.
  EXPECT_EQ(std::string(initial_state(make(Status::Actual, MsgType::Alert), {"Test"}, 0, 1)),
            state::kPendingApproval);
  EXPECT_EQ(std::string(initial_state(make(Status::Actual, MsgType::Update), {}, 0, 0)),
            state::kPendingApproval);
  // A listed drill status waits too.
  EXPECT_EQ(
      std::string(initial_state(make(Status::Exercise, MsgType::Alert), {"Actual", "Exercise"}, 10, 10)),
      state::kPendingApproval);
  EXPECT_EQ(std::string(initial_state(make(Status::Test, MsgType::Alert), {"Actual", "Exercise"}, 10, 10)),
            state::kAccepted);
}

TEST(AlertStates, NamesRoundTripAndUnknownNamesAreNone) {
  for (AlertState st : kAlertStates) {
    auto back = parse_state(to_string(st));
    ASSERT_TRUE(back) << to_string(st);
    EXPECT_EQ(*back, st);
  }
  EXPECT_FALSE(parse_state(""));
  EXPECT_FALSE(parse_state("Accepted"));
  EXPECT_STREQ(state::kDispatching, "dispatching");
}

TEST(AlertStates, OnlyAcceptedAndDispatchingSendAndTheyAreNotFinal) {
  for (AlertState st : kAlertStates) {
    bool sending = st == AlertState::Accepted || st == AlertState::Dispatching;
    EXPECT_EQ(is_sending(st), sending) << to_string(st);
    EXPECT_EQ(is_final(st), !sending && st != AlertState::PendingApproval) << to_string(st);
  }
}

TEST(AlertStates, TransitionsFollowTheDiagramAndNothingLeavesAFinalState) {
  using S = AlertState;
  EXPECT_TRUE(can_transition(S::PendingApproval, S::Accepted));
  EXPECT_FALSE(can_transition(S::PendingApproval, S::Dispatching));  // approval comes first
  EXPECT_TRUE(can_transition(S::Accepted, S::Dispatching));
  EXPECT_TRUE(can_transition(S::Accepted, S::Completed));  // nobody reached
  EXPECT_TRUE(can_transition(S::Dispatching, S::Completed));
  EXPECT_FALSE(can_transition(S::Dispatching, S::Accepted));
  for (S from : {S::PendingApproval, S::Accepted, S::Dispatching}) {
    EXPECT_TRUE(can_transition(from, S::Cancelled)) << to_string(from);
    EXPECT_TRUE(can_transition(from, S::Superseded)) << to_string(from);
  }
  for (S from : kAlertStates) {
    if (!is_final(from)) continue;
    for (S to : kAlertStates) {
      EXPECT_FALSE(can_transition(from, to)) << to_string(from) << " -> " << to_string(to);
    }
  }
}

TEST(AlertStates, TheScriptsTableNamesEveryState) {
  std::string lua = state_names_lua();
  EXPECT_EQ(lua.rfind("local S = {", 0), 0u);
  for (AlertState st : kAlertStates) {
    std::string entry = std::string(to_string(st)) + " = '" + to_string(st) + "'";
    EXPECT_NE(lua.find(entry), std::string::npos) << entry;
  }
}

}  // namespace
}  // namespace sirena::alerts
