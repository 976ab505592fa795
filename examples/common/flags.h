// A small command-line parser for tessera's programs: --name value or --name=value, typed
// targets with defaults and limits, --help listing every flag with its default and limits.
//
// Every value is checked as it is parsed: a number flag takes only finite numbers (no inf or nan)
// within its limits, a text flag with choices only one of them; anything else is a config error
// naming the flag and the value ("--temperature -1: must be > 0"). Defaults are not checked.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tessera/error.h"

namespace tessera::program {

// The values a flag accepts, set where the flag is added: p.add("lr", &lr, "...").above(0).
class FlagLimits {
 public:
  FlagLimits& at_least(double v);  // numbers: value >= v
  FlagLimits& above(double v);     // numbers: value > v
  FlagLimits& at_most(double v);   // numbers: value <= v
  FlagLimits& below(double v);     // numbers: value < v
  FlagLimits& one_of(std::vector<std::string> choices);  // text: one of these

  // Empty when `value` (a number flag's value) is within the limits, else what it must be ("> 0").
  std::string check(double value) const;
  // The same for a text flag's value ("one of auto, never").
  std::string check(const std::string& value) const;
  std::string describe() const;  // for --help; empty without limits

 private:
  std::optional<double> min_, max_;
  bool min_open_ = false, max_open_ = false;
  std::vector<std::string> choices_;
};

class FlagParser {
 public:
  FlagParser(std::string program, std::string usage);

  FlagLimits& add(const std::string& name, std::string* target, const std::string& help);
  FlagLimits& add(const std::string& name, int* target, const std::string& help);
  FlagLimits& add(const std::string& name, int64_t* target, const std::string& help);
  FlagLimits& add(const std::string& name, float* target, const std::string& help);
  FlagLimits& add(const std::string& name, double* target, const std::string& help);
  // A bool flag: "--name" sets it; "--name=false" / "--name 0" clears it.
  void add(const std::string& name, bool* target, const std::string& help);
  // Starts a titled group in --help.
  void section(const std::string& title);
  // The limits of a flag added earlier, for setting them apart from the add() call.
  FlagLimits& limits(const std::string& name);

  // Parses argv; throws config_error for unknown flags, missing or malformed values.
  // Returns false when --help was given (the help text has been printed).
  bool parse(int argc, char** argv);
  // Whether a flag was given explicitly on the command line.
  bool given(const std::string& name) const;
  std::set<std::string> given_flags() const;
  std::string help() const;
  // Remaining arguments that are not flags (in order).
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  struct Flag {
    std::string name, help, default_value;
    bool is_bool = false;
    bool given = false;
    FlagLimits limits;
    std::function<void(const Flag&, const std::string&)> set;  // parses, checks the limits, stores
  };
  Flag& add_flag(const std::string& name, const std::string& help, std::string default_value, bool is_bool,
                 std::function<void(const Flag&, const std::string&)> set);
  Flag* find(const std::string& name);

  std::string program_, usage_;
  std::vector<std::unique_ptr<Flag>> flags_;  // stable addresses: add() hands out their limits
  std::vector<std::pair<size_t, std::string>> sections_;  // (index of first flag, title)
  std::vector<std::string> positional_;
};

// A number as the flags print it ("0.001", "1e+20").
std::string format_number(double v);

// parse(value) (a library parser of a flag's value, such as ModelConfig::preset) with its error
// naming the flag and the value: "flag --model 'gpt5': unknown GPT-2 model 'gpt5'".
template <typename Parse>
auto parse_flag_value(const std::string& flag, const std::string& value, Parse parse) -> decltype(parse(value)) {
  try {
    return parse(value);
  } catch (const Error& e) {
    throw Error(e.code(), "flag --" + flag + " '" + value + "': " + e.what_happened(), e.where(), e.hint());
  }
}

// Runs a program body: tessera::Error becomes "<program>: error: ..." and its exit code;
// any other exception is reported and exits 1. Never lets an exception escape main.
int run_program(const char* program, const std::function<int()>& body);

}  // namespace tessera::program
