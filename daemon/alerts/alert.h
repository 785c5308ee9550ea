// The parsed form of a CAP 1.2 alert (OASIS CAP v1.2, §3.2), shared by the CAP XML
// parser, the JSON alert form, storage and the API.
//
// Times are kept twice: the text as sent (CAP dateTime with its offset, needed to
// match `references` triples byte for byte) and the instant in Unix milliseconds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sirena::alerts {

enum class Status { Actual, Exercise, System, Test, Draft };
enum class MsgType { Alert, Update, Cancel, Ack, Error };
enum class Scope { Public, Restricted, Private };

struct Timestamp {
  std::string text;     // as in the message, e.g. "2003-06-17T14:57:00-07:00"
  int64_t unix_ms = 0;  // the same instant
};

struct Reference {  // one "sender,identifier,sent" triple (§3.2.1 references)
  std::string sender;
  std::string identifier;
  std::string sent;  // the text, compared as text
};

struct Point {
  double lat = 0;
  double lon = 0;
};

struct Polygon {  // §3.2.4 polygon: closed ring, >= 4 points, first == last
  std::vector<Point> points;
};

struct Circle {  // §3.2.4 circle: "lat,lon radius" with radius in km
  Point center;
  double radius_km = 0;
};

struct NameValue {  // valueName/value pairs: eventCode, parameter, geocode
  std::string name;
  std::string value;
};

struct Area {
  std::string desc;
  std::vector<Polygon> polygons;
  std::vector<Circle> circles;
  std::vector<NameValue> geocodes;
  std::optional<double> altitude;
  std::optional<double> ceiling;
};

struct Resource {
  std::string desc;
  std::string mime_type;
  std::optional<int64_t> size;
  std::string uri;
  std::string digest;
};

struct Info {
  std::string language = "en-US";       // §3.2.2 default when absent
  std::vector<std::string> categories;  // Geo, Met, Safety, ... (at least one)
  std::string event;
  std::vector<std::string> response_types;  // Shelter, Evacuate, ...
  std::string urgency;                      // Immediate, Expected, Future, Past, Unknown
  std::string severity;                     // Extreme, Severe, Moderate, Minor, Unknown
  std::string certainty;                    // Observed, Likely, Possible, Unlikely, Unknown
  std::string audience;
  std::vector<NameValue> event_codes;
  std::optional<Timestamp> effective;
  std::optional<Timestamp> onset;
  std::optional<Timestamp> expires;
  std::string sender_name;
  std::string headline;
  std::string description;
  std::string instruction;
  std::string web;
  std::string contact;
  std::vector<NameValue> parameters;
  std::vector<Resource> resources;
  std::vector<Area> areas;
};

struct Alert {
  std::string identifier;
  std::string sender;
  Timestamp sent;
  Status status = Status::Actual;
  MsgType msg_type = MsgType::Alert;
  std::string source;
  Scope scope = Scope::Public;
  std::string restriction;
  std::string addresses;
  std::vector<std::string> codes;
  std::string note;
  std::vector<Reference> references;
  std::string incidents;
  std::vector<Info> infos;

  // Where it came from and what intake changed to accept it.
  std::string cap_version = "1.2";          // "1.2", or "1.1" for accepted CAP 1.1 input
  std::vector<std::string> normalisations;  // human-readable, e.g. "unwrapped EDXL-DE envelope"
};

// Text forms used in CAP, JSON, storage and metrics labels ("Actual", "Update", ...).
const char* to_string(Status s);
const char* to_string(MsgType m);
const char* to_string(Scope s);
std::optional<Status> parse_status(std::string_view s);
std::optional<MsgType> parse_msg_type(std::string_view s);
std::optional<Scope> parse_scope(std::string_view s);

// The latest `expires` over all infos, if any info has one.
std::optional<int64_t> latest_expiry_ms(const Alert& a);

}  // namespace sirena::alerts
