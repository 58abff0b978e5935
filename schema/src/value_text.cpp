#include "value_text.hpp"

#include <cstdio>

#include "printable.hpp"

namespace fanout::wire {

namespace {

constexpr int kMaxDepth = 16;

class Writer {
 public:
  explicit Writer(std::size_t max_bytes) : max_bytes_(max_bytes) {}

  void value(Value::Reader value, int depth) {
    if (full()) return;
    if (depth > kMaxDepth) return put("...");
    switch (value.which()) {
      case Value::NONE: return put("none");
      case Value::BOOL: return put(value.getBool() ? "true" : "false");
      case Value::INT: return put(std::to_string(value.getInt()));
      case Value::UINT: return put(std::to_string(value.getUint()));
      case Value::FLOAT32: return number(value.getFloat32());
      case Value::FLOAT64: return number(value.getFloat64());
      case Value::TEXT: {
        const auto text = value.getText();
        return put("\"" + printable(std::string_view(text.cStr(), text.size()), max_bytes_) + "\"");
      }
      case Value::BYTES: return put("bytes(" + std::to_string(value.getBytes().size()) + ")");
      case Value::LIST: return sequence(value.getList(), "[", "]", depth);
      case Value::TUPLE: return sequence(value.getTuple(), "(", ")", depth);
      case Value::MAP: {
        put("{");
        bool first = true;
        for (const auto entry : value.getMap()) {
          if (full()) return;
          if (!first) put(", ");
          first = false;
          this->value(entry.getKey(), depth + 1);
          put(": ");
          this->value(entry.getValue(), depth + 1);
        }
        return put("}");
      }
      case Value::SOME:
        put("some(");
        this->value(value.getSome(), depth + 1);
        return put(")");
    }
    put("?");  // a member of a newer schema
  }

  std::string take() {
    if (out_.size() > max_bytes_) {
      out_.resize(max_bytes_);
      out_ += "...";
    }
    return std::move(out_);
  }

 private:
  bool full() const { return out_.size() > max_bytes_; }
  void put(const std::string& text) { out_ += text; }
  void number(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    put(text);
  }
  void sequence(capnp::List<Value>::Reader items, const char* open, const char* close, int depth) {
    put(open);
    bool first = true;
    for (const auto item : items) {
      if (full()) return;
      if (!first) put(", ");
      first = false;
      value(item, depth + 1);
    }
    put(close);
  }

  std::size_t max_bytes_;
  std::string out_;
};

}  // namespace

std::string value_text(Value::Reader value, std::size_t max_bytes) {
  Writer writer(max_bytes);
  writer.value(value, 0);
  return writer.take();
}

}  // namespace fanout::wire
