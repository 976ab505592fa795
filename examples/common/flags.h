// A small command-line parser for tessera's programs: --name value or --name=value, typed
// targets with defaults, --help listing every flag with its default.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tessera::program {

class FlagParser {
 public:
  FlagParser(std::string program, std::string usage);

  void add(const std::string& name, std::string* target, const std::string& help);
  void add(const std::string& name, int* target, const std::string& help);
  void add(const std::string& name, int64_t* target, const std::string& help);
  void add(const std::string& name, float* target, const std::string& help);
  void add(const std::string& name, double* target, const std::string& help);
  // A bool flag: "--name" sets it; "--name=false" / "--name 0" clears it.
  void add(const std::string& name, bool* target, const std::string& help);
  // Starts a titled group in --help.
  void section(const std::string& title);

  // Parses argv; throws config_error for unknown flags, missing or malformed values.
  // Returns false when --help was given (the help text has been printed).
  bool parse(int argc, char** argv);
  // Whether a flag was given explicitly on the command line.
  bool given(const std::string& name) const;
  std::string help() const;
  // Remaining arguments that are not flags (in order).
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  struct Flag {
    std::string name, help, default_value;
    bool is_bool = false;
    bool given = false;
    std::function<void(const std::string&)> set;
  };
  void add_flag(const std::string& name, const std::string& help, std::string default_value, bool is_bool,
                std::function<void(const std::string&)> set);
  Flag* find(const std::string& name);

  std::string program_, usage_;
  std::vector<Flag> flags_;
  std::vector<std::pair<size_t, std::string>> sections_;  // (index of first flag, title)
  std::vector<std::string> positional_;
};

// Runs a program body: tessera::Error becomes "<program>: error: ..." and its exit code;
// any other exception is reported and exits 1. Never lets an exception escape main.
int run_program(const char* program, const std::function<int()>& body);

}  // namespace tessera::program
