#include "common/flags.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "tessera/error.h"

namespace tessera::program {

namespace {

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
    throw config_error("flag --" + flag + ": '" + text + "' is not an integer", "see --help");
  return v;
}

double parse_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw config_error("flag --" + flag + ": '" + text + "' is not a number", "see --help");
  return v;
}

bool parse_bool(const std::string& flag, const std::string& text) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  throw config_error("flag --" + flag + ": '" + text + "' is not true or false", "see --help");
}

}  // namespace

FlagParser::FlagParser(std::string program, std::string usage) : program_(std::move(program)), usage_(std::move(usage)) {}

void FlagParser::add_flag(const std::string& name, const std::string& help, std::string default_value, bool is_bool,
                          std::function<void(const std::string&)> set) {
  if (find(name)) throw internal_error("flag --" + name + " registered twice", TESSERA_HERE);
  flags_.push_back(Flag{name, help, std::move(default_value), is_bool, false, std::move(set)});
}

void FlagParser::add(const std::string& name, std::string* target, const std::string& help) {
  add_flag(name, help, target->empty() ? "\"\"" : *target, false, [target](const std::string& v) { *target = v; });
}
void FlagParser::add(const std::string& name, int* target, const std::string& help) {
  add_flag(name, help, std::to_string(*target), false, [target, name](const std::string& v) {
    int64_t x = parse_integer(name, v);
    if (x < INT32_MIN || x > INT32_MAX) throw config_error("flag --" + name + ": " + v + " is out of range");
    *target = int(x);
  });
}
void FlagParser::add(const std::string& name, int64_t* target, const std::string& help) {
  add_flag(name, help, std::to_string(*target), false,
           [target, name](const std::string& v) { *target = parse_integer(name, v); });
}
void FlagParser::add(const std::string& name, float* target, const std::string& help) {
  add_flag(name, help, format_float(*target), false,
           [target, name](const std::string& v) { *target = float(parse_number(name, v)); });
}
void FlagParser::add(const std::string& name, double* target, const std::string& help) {
  add_flag(name, help, format_float(*target), false,
           [target, name](const std::string& v) { *target = parse_number(name, v); });
}
void FlagParser::add(const std::string& name, bool* target, const std::string& help) {
  add_flag(name, help, *target ? "true" : "false", true,
           [target, name](const std::string& v) { *target = parse_bool(name, v); });
}

void FlagParser::section(const std::string& title) { sections_.emplace_back(flags_.size(), title); }

FlagParser::Flag* FlagParser::find(const std::string& name) {
  for (auto& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

bool FlagParser::given(const std::string& name) const {
  for (const auto& f : flags_)
    if (f.name == name) return f.given;
  return false;
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
        throw config_error("flag --" + name + " needs a value", "see --help");
      }
    }
    flag->set(value);
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
    const Flag& f = flags_[i];
    std::string left = "  --" + f.name + (f.is_bool ? "" : " VALUE");
    if (left.size() < 28) left.resize(28, ' ');
    out << left << " " << f.help << " (default: " << f.default_value << ")\n";
  }
  return out.str();
}

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
