#include "common/flags.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "tessera/error.h"

namespace tessera::program {

namespace {

// "--lr", and "-f" for the one-letter flags of the nccl-tests style.
std::string dashed(const std::string& name) { return (name.size() == 1 ? "-" : "--") + name; }

std::string format_float(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

int64_t parse_integer(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw config_error("flag " + dashed(flag) + ": '" + text + "' is not an integer", "see --help");
  return v;
}

double parse_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw config_error("flag " + dashed(flag) + ": '" + text + "' is not a number", "see --help");
  if (!std::isfinite(v)) throw config_error("flag " + dashed(flag) + ": '" + text + "' is not a finite number", "see --help");
  return v;
}

// A number within the flag's limits (config error naming the flag and the value otherwise).
template <typename T>
T within_limits(const std::string& flag, const FlagLimits& limits, const std::string& text, T value) {
  if (std::string must = limits.check(double(value)); !must.empty())
    throw config_error("flag " + dashed(flag) + " " + text + ": must be " + must, "see --help");
  return value;
}

bool parse_bool(const std::string& flag, const std::string& text) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  throw config_error("flag " + dashed(flag) + ": '" + text + "' is not true or false", "see --help");
}

}  // namespace

FlagLimits& FlagLimits::at_least(double v) {
  min_ = v;
  min_open_ = false;
  return *this;
}
FlagLimits& FlagLimits::above(double v) {
  min_ = v;
  min_open_ = true;
  return *this;
}
FlagLimits& FlagLimits::at_most(double v) {
  max_ = v;
  max_open_ = false;
  return *this;
}
FlagLimits& FlagLimits::below(double v) {
  max_ = v;
  max_open_ = true;
  return *this;
}
FlagLimits& FlagLimits::one_of(std::vector<std::string> choices) {
  choices_ = std::move(choices);
  return *this;
}

std::string FlagLimits::check(double value) const {
  bool low = min_ && (min_open_ ? !(value > *min_) : !(value >= *min_));
  bool high = max_ && (max_open_ ? !(value < *max_) : !(value <= *max_));
  return low || high ? describe() : "";
}

std::string FlagLimits::check(const std::string& value) const {
  if (choices_.empty()) return "";
  for (const std::string& c : choices_)
    if (value == c) return "";
  return describe();
}

std::string FlagLimits::describe() const {
  if (!choices_.empty()) {
    std::string s = "one of ";
    for (size_t i = 0; i < choices_.size(); ++i) s += (i ? ", " : "") + choices_[i];
    return s;
  }
  std::string lo = min_ ? (min_open_ ? "> " : ">= ") + format_float(*min_) : "";
  std::string hi = max_ ? (max_open_ ? "< " : "<= ") + format_float(*max_) : "";
  if (!lo.empty() && !hi.empty()) return lo + " and " + hi;
  return lo + hi;
}

FlagParser::FlagParser(std::string program, std::string usage) : program_(std::move(program)), usage_(std::move(usage)) {}

FlagParser::Flag& FlagParser::add_flag(const std::string& name, const std::string& help, std::string default_value,
                                       bool is_bool, std::function<void(const Flag&, const std::string&)> set) {
  if (find(name)) throw internal_error("flag " + dashed(name) + " registered twice", TESSERA_HERE);
  flags_.push_back(std::make_unique<Flag>(Flag{name, help, std::move(default_value), is_bool, false, {}, std::move(set)}));
  return *flags_.back();
}

FlagLimits& FlagParser::add(const std::string& name, std::string* target, const std::string& help) {
  return add_flag(name, help, target->empty() ? "\"\"" : *target, false, [target](const Flag& f, const std::string& v) {
           if (std::string must = f.limits.check(v); !must.empty())
             throw config_error("flag " + dashed(f.name) + " '" + v + "': must be " + must, "see --help");
           *target = v;
         }).limits;
}
FlagLimits& FlagParser::add(const std::string& name, int* target, const std::string& help) {
  return add_flag(name, help, std::to_string(*target), false, [target](const Flag& f, const std::string& v) {
           int64_t x = parse_integer(f.name, v);
           if (x < INT32_MIN || x > INT32_MAX) throw config_error("flag " + dashed(f.name) + ": " + v + " is out of range");
           *target = within_limits(f.name, f.limits, v, int(x));
         }).limits;
}
FlagLimits& FlagParser::add(const std::string& name, int64_t* target, const std::string& help) {
  return add_flag(name, help, std::to_string(*target), false, [target](const Flag& f, const std::string& v) {
           *target = within_limits(f.name, f.limits, v, parse_integer(f.name, v));
         }).limits;
}
FlagLimits& FlagParser::add(const std::string& name, float* target, const std::string& help) {
  return add_flag(name, help, format_float(*target), false, [target](const Flag& f, const std::string& v) {
           double x = parse_number(f.name, v);
           if (std::fabs(x) > double(std::numeric_limits<float>::max()))
             throw config_error("flag " + dashed(f.name) + ": " + v + " is out of range");
           *target = within_limits(f.name, f.limits, v, float(x));
         }).limits;
}
FlagLimits& FlagParser::add(const std::string& name, double* target, const std::string& help) {
  return add_flag(name, help, format_float(*target), false, [target](const Flag& f, const std::string& v) {
           *target = within_limits(f.name, f.limits, v, parse_number(f.name, v));
         }).limits;
}
void FlagParser::add(const std::string& name, bool* target, const std::string& help) {
  add_flag(name, help, *target ? "true" : "false", true,
           [target](const Flag& f, const std::string& v) { *target = parse_bool(f.name, v); });
}

void FlagParser::section(const std::string& title) { sections_.emplace_back(flags_.size(), title); }

FlagLimits& FlagParser::limits(const std::string& name) {
  Flag* flag = find(name);
  if (!flag) throw internal_error("limits for flag " + dashed(name) + ", which was never added", TESSERA_HERE);
  return flag->limits;
}

FlagParser::Flag* FlagParser::find(const std::string& name) {
  for (auto& f : flags_)
    if (f->name == name) return f.get();
  return nullptr;
}

bool FlagParser::given(const std::string& name) const {
  for (const auto& f : flags_)
    if (f->name == name) return f->given;
  return false;
}

std::set<std::string> FlagParser::given_flags() const {
  std::set<std::string> out;
  for (const auto& f : flags_)
    if (f->given) out.insert(f->name);
  return out;
}

bool FlagParser::parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(help().c_str(), stdout);
      return false;
    }
    // "-x" is accepted for single-letter flags (nccl-tests' -b -e -f -n -w style).
    bool short_flag = arg.size() == 2 && arg[0] == '-' && arg[1] != '-';
    if (arg.rfind("--", 0) != 0 && !short_flag) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(short_flag ? 1 : 2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = find(name);
    if (!flag) throw config_error("unknown flag --" + name, "run " + program_ + " --help for the list of flags");
    if (!has_value) {
      bool next_is_value = i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0;
      if (flag->is_bool && !(next_is_value && (std::string(argv[i + 1]) == "true" || std::string(argv[i + 1]) == "false" ||
                                               std::string(argv[i + 1]) == "0" || std::string(argv[i + 1]) == "1"))) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw config_error("flag " + dashed(name) + " needs a value", "see --help");
      }
    }
    flag->set(*flag, value);
    flag->given = true;
  }
  return true;
}

std::string FlagParser::help() const {
  std::ostringstream out;
  out << "usage: " << usage_ << "\n";
  size_t next_section = 0;
  for (size_t i = 0; i < flags_.size(); ++i) {
    while (next_section < sections_.size() && sections_[next_section].first == i)
      out << "\n" << sections_[next_section++].second << ":\n";
    const Flag& f = *flags_[i];
    std::string left = "  --" + f.name + (f.is_bool ? "" : " VALUE");
    if (left.size() < 28) left.resize(28, ' ');
    std::string limits = f.limits.describe();
    out << left << " " << f.help << " (default: " << f.default_value << (limits.empty() ? "" : "; " + limits) << ")\n";
  }
  return out.str();
}

std::string format_number(double v) { return format_float(v); }

int run_program(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return int(e.code());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%s: error: out of memory; use a smaller model, batch or sequence length\n", program);
    return int(ExitCode::bad_config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return int(ExitCode::bad_config);
  }
}

}  // namespace tessera::program
