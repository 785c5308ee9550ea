// application/x-www-form-urlencoded (query strings and POST forms), per the WHATWG URL
// standard's parser: '&'-separated pairs, '+' is a space, %XX an octet.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sirena::sim {

// Decodes into `out` (cleared first); invalid escapes are kept literally.
void percent_decode(std::string_view in, std::string& out);

// The decoded value of the first pair named `name`; nullopt when there is none.
std::optional<std::string> form_value(std::string_view form, std::string_view name);

}  // namespace sirena::sim
