// Errors: library code throws tessera::Error carrying what went wrong, where, and what to do.
// Programs catch it once, print it and exit with the code it carries (see exit codes below).
#pragma once

#include <stdexcept>
#include <string>

namespace tessera {

// Process exit codes shared by every tessera program.
enum class ExitCode : int {
  ok = 0,
  bad_config = 1,       // bad arguments, config or layout
  bad_data = 2,         // bad dataset or checkpoint
  hang_or_peer = 3,     // hang or peer failure detected
  nonfinite_loss = 4,   // non-finite loss with --on-nan stop
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, std::string what, std::string where, std::string hint);

  ExitCode code() const { return code_; }
  const std::string& what_happened() const { return what_; }
  const std::string& where() const { return where_; }
  const std::string& hint() const { return hint_; }

 private:
  ExitCode code_;
  std::string what_, where_, hint_;
};

// Convenience constructors for the common categories.
Error config_error(std::string what, std::string hint = "", std::string where = "");
Error data_error(std::string what, std::string where, std::string hint = "");
Error internal_error(std::string what, std::string where);

}  // namespace tessera

#define TESSERA_STRINGIFY_DETAIL(x) #x
#define TESSERA_STRINGIFY(x) TESSERA_STRINGIFY_DETAIL(x)
#define TESSERA_HERE (std::string(__FILE__ ":") + TESSERA_STRINGIFY(__LINE__))

// Precondition inside the library: a violated check is a programming or usage error.
#define TESSERA_CHECK(cond, msg)                                                              \
  do {                                                                                        \
    if (!(cond)) throw ::tessera::Error(::tessera::ExitCode::bad_config,                      \
                                        std::string("check failed: " #cond ": ") + (msg),     \
                                        TESSERA_HERE, "");                                    \
  } while (0)
