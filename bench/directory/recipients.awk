# Soliera's citizens, N = -v n=...: 70% with a phone (+39 333...), 40% APNs, 20% FCM; one to
# three topics; Italian, English or Arabic; one location in the town, a second (work) for one
# in five; one in ten registered in a zone. One NDJSON line each, for POST /v1/recipients/import.
# -v variant=1: the same recipients, each with other topics (an update of every line).
BEGIN {
  split("Met Geo Safety Fire Health viabilita scuole", topic, " "); split("it en ar", lang, " ")
  for (i = 0; i < n; ++i) {
    s = "{\"id\":\"r-" i "\",\"language\":\"" lang[i % 7 == 0 ? 2 : i % 13 == 0 ? 3 : 1] "\""
    if (i % 10 < 7) s = s ",\"phone\":\"+39333" sprintf("%07d", i % 10000000) "\""
    push = ""
    if (i % 5 < 2) push = "{\"platform\":\"apns\",\"app\":\"it.comune.soliera.app\",\"token\":\"" sprintf("%064x", i + 1) "\"}"
    else if (i % 5 == 2) push = "{\"platform\":\"fcm\",\"app\":\"soliera-app\",\"token\":\"fcm-" i "-" sprintf("%0120d", 0) "\"}"
    if (push != "") s = s ",\"push\":[" push "]"
    s = s ",\"topics\":[\"" topic[(i + variant) % 7 + 1] "\""
    for (k = 1; k < i % 3 + 1; ++k) s = s ",\"" topic[(i + 2 * k) % 7 + 1] "\""
    s = s "],\"locations\":[{\"lat\":" sprintf("%.6f", 44.72 + (i * 7919 % 40000) / 1e6) ",\"lon\":" sprintf("%.6f", 10.90 + (i * 104729 % 50000) / 1e6) "}"
    if (i % 5 == 0) s = s ",{\"lat\":" sprintf("%.6f", 44.70 + (i * 31 % 60000) / 1e6) ",\"lon\":" sprintf("%.6f", 10.88 + (i * 37 % 80000) / 1e6) "}"
    s = s "]"
    if (i % 10 == 3) s = s ",\"zones\":[\"soliera-centro\"]"
    print s "}"
  }
}
