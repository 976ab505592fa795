// A small JSON value (private to the library): Hugging Face config.json, safetensors headers,
// checkpoint manifests and metrics lines. Objects keep their keys in insertion order so what we
// write reads the way we wrote it; integers keep int64 exactness (offsets, token counts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::json {

class Value {
 public:
  enum class Type { null, boolean, number, string, array, object };
  struct Member;  // {key, value}

  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::boolean), bool_(b) {}
  Value(double d) : type_(Type::number), number_(d) {}
  Value(float f) : Value(double(f)) {}
  Value(int64_t i) : type_(Type::number), number_(double(i)), integer_(i), is_integer_(true) {}
  Value(int i) : Value(int64_t(i)) {}
  Value(uint64_t u);  // exact when it fits in int64, else stored as double
  Value(const char* s) : type_(Type::string), string_(s) {}
  Value(std::string s) : type_(Type::string), string_(std::move(s)) {}
  static Value array() { Value v; v.type_ = Type::array; return v; }
  static Value object() { Value v; v.type_ = Type::object; return v; }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::number; }
  // A number written without fraction or exponent that fits in int64 (or built from an integer).
  bool is_integer() const { return type_ == Type::number && is_integer_; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  // Accessors throw tessera::Error (bad_data) naming the expected and actual type.
  bool as_bool() const;
  double as_double() const;
  int64_t as_int64() const;  // integers only (a double with an integral value is accepted too)
  const std::string& as_string() const;

  // Arrays.
  const std::vector<Value>& items() const;
  std::vector<Value>& items();
  Value& push_back(Value v);
  const Value& operator[](size_t i) const;  // bounds-checked

  // Objects (keys in insertion order; lookups are linear, which suits the sizes we handle).
  const std::vector<Member>& members() const;
  bool contains(const std::string& key) const;
  const Value* find(const std::string& key) const;  // nullptr when absent (or not an object)
  const Value& at(const std::string& key) const;    // throws naming the key when absent
  Value& set(const std::string& key, Value v);      // replaces an existing key in place, or appends
  Value& operator[](const std::string& key);        // inserts null when absent (like std::map)

  // Number of array items or object members; 0 otherwise.
  size_t size() const;

  // Compact when indent < 0; otherwise one member per line indented by `indent` spaces per level.
  // Numbers: integers exactly; doubles with the shortest digits that round-trip; NaN/Inf as null.
  std::string dump(int indent = -1) const;

  friend bool operator==(const Value& a, const Value& b);
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

 private:
  static const char* type_name(Type t);
  [[noreturn]] void type_mismatch(Type expected) const;
  void dump_to(std::string& out, int indent, int depth) const;

  Type type_ = Type::null;
  bool bool_ = false;
  double number_ = 0.0;
  int64_t integer_ = 0;
  bool is_integer_ = false;
  std::string string_;
  std::vector<Value> items_;
  std::vector<Member> members_;
};

struct Value::Member {
  std::string key;
  Value value;
};

// Parses one JSON document (RFC 8259; surrounding whitespace allowed, duplicate keys rejected).
// Malformed input throws tessera::Error (bad_data) whose message gives the byte offset and the
// problem; `where` (a file name, usually) goes into the error's where.
Value parse(const std::string& text, const std::string& where = "JSON text");
Value parse(const char* data, size_t size, const std::string& where = "JSON text");

// Building blocks shared with writers that stream JSON (metrics lines).
std::string quote(const std::string& s);      // "..." with escapes; bytes >= 0x80 pass through
std::string format_number(double d);          // shortest round-trip digits; "null" if not finite
std::string format_float(float f);            // shortest digits that round-trip the float

}  // namespace tessera::json
