// Every Redis key Sirena uses, spelled here and nowhere else in C++ (the Lua scripts get
// a tenant's prefix as KEYS[1] and append the same names; each script's header lists
// the keys it touches). A tenant's keys share the hash tag {t:<tenant>}, so that one
// script call touches one Redis Cluster slot; the dispatch streams share {dispatch}.
//
// Tenant T, alert A, recipient tenant R (T or a neighbour that granted T zones):
//   {t:T}:alerts            zset    alert ids (score 0, listed by id: ULIDs sort by time)
//   {t:T}:alert:<A>         hash    the alert: state, status, raw, parsed, ... (alert_store.h)
//   {t:T}:idem              hash    "<sender>,<identifier>,<sent>" -> alert id
//   {t:T}:pending:<triple>  list    references that named an alert before it existed
//   {t:T}:unplanned         zset    accepted alerts whose plan is not complete (score: when
//                                   a replanner may take them up)
//   {t:T}:audit             stream  who did what (key ids, never keys)
//   {t:T}:plan:<A>          hash    batches, done, recipients, planned:<channel>, priority, next
//                                   (batch number); while being written also writing
//                                   (consumer), writing_ms, base
//   {t:T}:batch:<A>:<n>     string  "<R>\n<slot> <slot> ..."
//   {t:T}:deliv:<A>         hash    "<R>:<slot>:<channel>" -> "<state>|<attempts>|<reason>"
//   {t:T}:acc:<A>           hash    batch number -> "<channel>:<from>[-<to>],...": its push
//                                   messages accepted at the first attempt, by position in
//                                   the batch's slots (instead of a deliv field each)
//   {t:T}:progress:<A>      hash    "<channel>:<state>" -> count
//   {t:T}:smsto:<A>         hash    "<R>|<number>" -> deliv field (written before the SMS is sent)
//   {t:T}:dlr:<A>           hash    deliv field -> "<state>|<reason>" of the first final DLR
//   {t:T}:flush:<token>     string  a write-back call already applied (10 minutes)
//   {t:R}:recipients        hash    recipient id -> slot;  {t:R}:contacts: slot -> contacts
//   {t:R}:zones             hash    zone name -> GeoJSON
//   (the directory's index keys, changes, index_blocks..., are its scripts': directory.cc)
//   {t:R}:pruned            set     push tokens a gateway reported gone
//   {dispatch}:p<0..3>      stream  one entry per batch (a: alert, t: tenant, b: batch, r: set
//                                   when re-planned), by priority (0 = most urgent);
//                                   consumer group "sirenad"
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sirena::store::keys {

// "{t:T}:", what the scripts get as KEYS[1].
inline std::string tenant(std::string_view t) {
  std::string k;
  k.reserve(t.size() + 5);
  k.append("{t:").append(t).append("}:");
  return k;
}

namespace detail {
inline std::string of(std::string_view t, std::string_view name, std::string_view id = {}) {
  std::string k = tenant(t);
  k.append(name);
  if (!id.empty()) k.append(":").append(id);
  return k;
}
}  // namespace detail

inline std::string alerts(std::string_view t) {
  return detail::of(t, "alerts");
}
inline std::string alert(std::string_view t, std::string_view id) {
  return detail::of(t, "alert", id);
}
inline std::string unplanned(std::string_view t) {
  return detail::of(t, "unplanned");
}
inline std::string audit(std::string_view t) {
  return detail::of(t, "audit");
}
inline std::string plan(std::string_view t, std::string_view id) {
  return detail::of(t, "plan", id);
}
inline std::string batch(std::string_view t, std::string_view id, std::string_view n) {
  return detail::of(t, "batch", id).append(":").append(n);
}
inline std::string batch(std::string_view t, std::string_view id, int64_t n) {
  return batch(t, id, std::to_string(n));
}
inline std::string deliv(std::string_view t, std::string_view id) {
  return detail::of(t, "deliv", id);
}
inline std::string acc(std::string_view t, std::string_view id) {
  return detail::of(t, "acc", id);
}
inline std::string progress(std::string_view t, std::string_view id) {
  return detail::of(t, "progress", id);
}
inline std::string smsto(std::string_view t, std::string_view id) {
  return detail::of(t, "smsto", id);
}
inline std::string recipients(std::string_view t) {
  return detail::of(t, "recipients");
}
inline std::string contacts(std::string_view t) {
  return detail::of(t, "contacts");
}
inline std::string zones(std::string_view t) {
  return detail::of(t, "zones");
}
inline std::string pruned(std::string_view t) {
  return detail::of(t, "pruned");
}
inline std::string dispatch_stream(int priority) {
  return "{dispatch}:p" + std::to_string(priority);
}

}  // namespace sirena::store::keys
