#include "io/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <unordered_set>

#include "tessera/error.h"

namespace tessera::json {

// ---------------------------------------------------------------------------------------------
// Value

Value::Value(uint64_t u) : type_(Type::number), number_(double(u)) {
  if (u <= uint64_t(std::numeric_limits<int64_t>::max())) {
    integer_ = int64_t(u);
    is_integer_ = true;
  }
}

const char* Value::type_name(Type t) {
  switch (t) {
    case Type::null: return "null";
    case Type::boolean: return "a boolean";
    case Type::number: return "a number";
    case Type::string: return "a string";
    case Type::array: return "an array";
    case Type::object: return "an object";
  }
  return "?";
}

void Value::type_mismatch(Type expected) const {
  throw data_error(std::string("JSON value is ") + type_name(type_) + ", expected " + type_name(expected),
                   "JSON value");
}

bool Value::as_bool() const {
  if (type_ != Type::boolean) type_mismatch(Type::boolean);
  return bool_;
}

double Value::as_double() const {
  if (type_ != Type::number) type_mismatch(Type::number);
  return number_;
}

int64_t Value::as_int64() const {
  if (type_ != Type::number) type_mismatch(Type::number);
  if (is_integer_) return integer_;
  // 2^63 is exactly representable; anything at or beyond it does not fit.
  if (std::isfinite(number_) && std::floor(number_) == number_ && number_ >= -9223372036854775808.0 &&
      number_ < 9223372036854775808.0)
    return int64_t(number_);
  throw data_error("JSON number " + format_number(number_) + " is not an integer that fits in int64",
                   "JSON value");
}

const std::string& Value::as_string() const {
  if (type_ != Type::string) type_mismatch(Type::string);
  return string_;
}

const std::vector<Value>& Value::items() const {
  if (type_ != Type::array) type_mismatch(Type::array);
  return items_;
}

std::vector<Value>& Value::items() {
  if (type_ != Type::array) type_mismatch(Type::array);
  return items_;
}

Value& Value::push_back(Value v) {
  if (type_ != Type::array) type_mismatch(Type::array);
  items_.push_back(std::move(v));
  return items_.back();
}

const Value& Value::operator[](size_t i) const {
  if (type_ != Type::array) type_mismatch(Type::array);
  if (i >= items_.size())
    throw data_error("JSON array index " + std::to_string(i) + " out of range (size " +
                         std::to_string(items_.size()) + ")",
                     "JSON value");
  return items_[i];
}

const std::vector<Value::Member>& Value::members() const {
  if (type_ != Type::object) type_mismatch(Type::object);
  return members_;
}

const Value* Value::find(const std::string& key) const {
  if (type_ != Type::object) return nullptr;
  for (const Member& m : members_)
    if (m.key == key) return &m.value;
  return nullptr;
}

bool Value::contains(const std::string& key) const { return find(key) != nullptr; }

const Value& Value::at(const std::string& key) const {
  if (type_ != Type::object) type_mismatch(Type::object);
  const Value* v = find(key);
  if (!v) throw data_error("JSON object has no key \"" + key + "\"", "JSON value");
  return *v;
}

Value& Value::set(const std::string& key, Value v) {
  if (type_ != Type::object) type_mismatch(Type::object);
  for (Member& m : members_)
    if (m.key == key) return m.value = std::move(v);
  members_.push_back(Member{key, std::move(v)});
  return members_.back().value;
}

Value& Value::operator[](const std::string& key) {
  if (type_ != Type::object) type_mismatch(Type::object);
  for (Member& m : members_)
    if (m.key == key) return m.value;
  members_.push_back(Member{key, Value()});
  return members_.back().value;
}

size_t Value::size() const {
  if (type_ == Type::array) return items_.size();
  if (type_ == Type::object) return members_.size();
  return 0;
}

bool operator==(const Value& a, const Value& b) {
  if (a.type_ != b.type_) return false;
  switch (a.type_) {
    case Value::Type::null: return true;
    case Value::Type::boolean: return a.bool_ == b.bool_;
    case Value::Type::number:
      if (a.is_integer_ && b.is_integer_) return a.integer_ == b.integer_;
      return a.number_ == b.number_;
    case Value::Type::string: return a.string_ == b.string_;
    case Value::Type::array: return a.items_ == b.items_;
    case Value::Type::object:
      if (a.members_.size() != b.members_.size()) return false;
      for (size_t i = 0; i < a.members_.size(); ++i)
        if (a.members_[i].key != b.members_[i].key || a.members_[i].value != b.members_[i].value)
          return false;
      return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Writing

std::string quote(const std::string& s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string format_number(double d) {
  if (!std::isfinite(d)) return "null";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

std::string format_float(float f) {
  if (!std::isfinite(f)) return "null";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::string(buf, r.ptr);
}

void Value::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int level) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent) * size_t(level), ' ');
  };
  switch (type_) {
    case Type::null: out += "null"; break;
    case Type::boolean: out += bool_ ? "true" : "false"; break;
    case Type::number: out += is_integer_ ? std::to_string(integer_) : format_number(number_); break;
    case Type::string: out += quote(string_); break;
    case Type::array:
      out += '[';
      for (size_t i = 0; i < items_.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        items_[i].dump_to(out, indent, depth + 1);
      }
      if (!items_.empty()) newline(depth);
      out += ']';
      break;
    case Type::object:
      out += '{';
      for (size_t i = 0; i < members_.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        out += quote(members_[i].key);
        out += indent < 0 ? ":" : ": ";
        members_[i].value.dump_to(out, indent, depth + 1);
      }
      if (!members_.empty()) newline(depth);
      out += '}';
      break;
  }
}

std::string Value::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parsing

namespace {

// Deep enough for any real document, shallow enough that recursion cannot exhaust the stack.
constexpr int kMaxDepth = 512;

class Parser {
 public:
  Parser(const char* data, size_t size, const std::string& where) : p_(data), n_(size), where_(where) {}

  Value document() {
    skip_whitespace();
    Value v = value(0);
    skip_whitespace();
    if (i_ != n_) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& problem, size_t at) const {
    throw data_error("malformed JSON at byte " + std::to_string(at) + ": " + problem, where_,
                     "the file is not valid JSON; check that it is complete and was written correctly");
  }
  [[noreturn]] void fail(const std::string& problem) const { fail(problem, i_); }

  static std::string describe(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", u);
    return std::string("byte ") + buf;
  }

  void skip_whitespace() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\t' || p_[i_] == '\n' || p_[i_] == '\r')) ++i_;
  }

  void expect_literal(const char* word) {
    size_t start = i_;
    for (const char* w = word; *w; ++w, ++i_)
      if (i_ >= n_ || p_[i_] != *w) fail(std::string("invalid literal (expected '") + word + "')", start);
  }

  Value value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (i_ >= n_) fail("unexpected end of input, expected a value");
    char c = p_[i_];
    switch (c) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': return Value(string());
      case 't': expect_literal("true"); return Value(true);
      case 'f': expect_literal("false"); return Value(false);
      case 'n': expect_literal("null"); return Value();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return number();
        fail("unexpected " + describe(c) + ", expected a value");
    }
  }

  Value object(int depth) {
    ++i_;  // '{'
    Value obj = Value::object();
    std::unordered_set<std::string> seen;
    skip_whitespace();
    if (i_ < n_ && p_[i_] == '}') {
      ++i_;
      return obj;
    }
    for (;;) {
      skip_whitespace();
      if (i_ >= n_) fail("unexpected end of input inside an object");
      if (p_[i_] != '"') fail("unexpected " + describe(p_[i_]) + ", expected a string key");
      size_t key_at = i_;
      std::string key = string();
      if (!seen.insert(key).second) fail("duplicate key " + quote(key), key_at);
      skip_whitespace();
      if (i_ >= n_ || p_[i_] != ':')
        fail(i_ >= n_ ? "unexpected end of input, expected ':'" : "unexpected " + describe(p_[i_]) + ", expected ':'");
      ++i_;
      skip_whitespace();
      obj.set(key, value(depth + 1));
      skip_whitespace();
      if (i_ >= n_) fail("unexpected end of input inside an object, expected ',' or '}'");
      if (p_[i_] == ',') {
        ++i_;
        continue;
      }
      if (p_[i_] == '}') {
        ++i_;
        return obj;
      }
      fail("unexpected " + describe(p_[i_]) + " inside an object, expected ',' or '}'");
    }
  }

  Value array(int depth) {
    ++i_;  // '['
    Value arr = Value::array();
    skip_whitespace();
    if (i_ < n_ && p_[i_] == ']') {
      ++i_;
      return arr;
    }
    for (;;) {
      skip_whitespace();
      arr.push_back(value(depth + 1));
      skip_whitespace();
      if (i_ >= n_) fail("unexpected end of input inside an array, expected ',' or ']'");
      if (p_[i_] == ',') {
        ++i_;
        continue;
      }
      if (p_[i_] == ']') {
        ++i_;
        return arr;
      }
      fail("unexpected " + describe(p_[i_]) + " inside an array, expected ',' or ']'");
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t hex4() {
    if (n_ - i_ < 4) fail("unexpected end of input in a \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      char c = p_[i_];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("invalid hex digit " + describe(c) + " in a \\u escape");
    }
    return v;
  }

  std::string string() {
    size_t start = i_;
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= n_) fail("unterminated string", start);
      unsigned char c = static_cast<unsigned char>(p_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character " + describe(char(c)) + " in a string");
      if (c != '\\') {
        out += char(c);
        ++i_;
        continue;
      }
      size_t escape_at = i_;
      ++i_;
      if (i_ >= n_) fail("unterminated string", start);
      char e = p_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate must be followed by an escaped low surrogate.
            if (n_ - i_ < 2 || p_[i_] != '\\' || p_[i_ + 1] != 'u')
              fail("high surrogate \\u escape not followed by a low surrogate", escape_at);
            i_ += 2;
            uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF)
              fail("high surrogate \\u escape not followed by a low surrogate", escape_at);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired low surrogate in a \\u escape", escape_at);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("invalid escape \\" + std::string(1, e) + " in a string", escape_at);
      }
    }
  }

  Value number() {
    size_t start = i_;
    auto digit = [&](size_t k) { return k < n_ && p_[k] >= '0' && p_[k] <= '9'; };
    if (p_[i_] == '-') ++i_;
    if (!digit(i_)) fail("invalid number: expected a digit", start);
    if (p_[i_] == '0') {
      ++i_;
      if (digit(i_)) fail("invalid number: leading zero", start);
    } else {
      while (digit(i_)) ++i_;
    }
    bool integral = true;
    if (i_ < n_ && p_[i_] == '.') {
      integral = false;
      ++i_;
      if (!digit(i_)) fail("invalid number: expected a digit after '.'", start);
      while (digit(i_)) ++i_;
    }
    if (i_ < n_ && (p_[i_] == 'e' || p_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < n_ && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
      if (!digit(i_)) fail("invalid number: expected a digit in the exponent", start);
      while (digit(i_)) ++i_;
    }
    const char* first = p_ + start;
    const char* last = p_ + i_;
    if (integral) {
      int64_t v = 0;
      auto r = std::from_chars(first, last, v);
      if (r.ec == std::errc() && r.ptr == last) return Value(v);
      // Too large for int64: fall through and keep it as a double.
    }
    double d = 0.0;
    auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc::result_out_of_range) {
      // Underflow to zero is harmless; overflow is not representable.
      bool tiny = false;
      for (const char* q = first; q < last; ++q)
        if (*q == 'e' || *q == 'E') tiny = q + 1 < last && q[1] == '-';
      if (!tiny) fail("number out of range", start);
      return Value(0.0);
    }
    if (r.ec != std::errc() || r.ptr != last) fail("invalid number", start);
    return Value(d);
  }

  const char* p_;
  size_t n_;
  size_t i_ = 0;
  const std::string& where_;
};

}  // namespace

Value parse(const char* data, size_t size, const std::string& where) {
  return Parser(data, size, where).document();
}

Value parse(const std::string& text, const std::string& where) { return parse(text.data(), text.size(), where); }

}  // namespace tessera::json
