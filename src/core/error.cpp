#include "tessera/error.h"

namespace tessera {

namespace {
std::string compose(const std::string& what, const std::string& where, const std::string& hint) {
  std::string s = what;
  if (!where.empty()) s += " [" + where + "]";
  if (!hint.empty()) s += "; " + hint;
  return s;
}
}  // namespace

Error::Error(ExitCode code, std::string what, std::string where, std::string hint)
    : std::runtime_error(compose(what, where, hint)),
      code_(code),
      what_(std::move(what)),
      where_(std::move(where)),
      hint_(std::move(hint)) {}

Error config_error(std::string what, std::string hint, std::string where) {
  return Error(ExitCode::bad_config, std::move(what), std::move(where), std::move(hint));
}

Error data_error(std::string what, std::string where, std::string hint) {
  return Error(ExitCode::bad_data, std::move(what), std::move(where), std::move(hint));
}

Error internal_error(std::string what, std::string where) {
  return Error(ExitCode::bad_config, std::move(what), std::move(where),
               "this is a bug in tessera; please report it with the command that triggered it");
}

}  // namespace tessera
