// results_dir.cpp
#include "results_dir.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <fanout/error.hpp>

namespace fanout::tool {

namespace {

// The longest name of one directory on the usual file systems.
constexpr std::size_t kLongestName = 255;

std::string as_directory_name(const std::string& value) {
  std::string name;
  for (const char c : value) {
    switch (c) {
      case '\\': name += "\\\\"; break;
      case '\t': name += "\\t"; break;
      case '\0': name += "\\0"; break;
      case '/': name += "\\_"; break;
      default: name += c; break;
    }
  }
  if (name.size() > kLongestName) name.resize(kLongestName);
  return name;
}

// GNU parallel orders the columns by their names: numerically (by the leading number, 0 if none),
// then as text.
bool name_before(const std::string& a, const std::string& b) {
  const auto number = [](const std::string& text) {
    double value = 0;
    std::size_t i = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
      value = value * 10 + (text[i] - '0');
      ++i;
    }
    return value;
  };
  const double left = number(a);
  const double right = number(b);
  if (left != right) return left < right;
  return a < b;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) throw Error("--results: cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace

ResultsDirectory::ResultsDirectory(const RunOptions& options, const std::vector<std::string>& column_names)
    : root_(options.results), names_(column_names) {
  const std::string rewritten = rewrite_column_names(options.results, column_names);
  CommandTemplate name({rewritten}, options.names, CommandTemplate::Use::text);
  if (name.has_replacements()) template_.emplace(std::move(name));
}

ResultsDirectory::Files ResultsDirectory::files_for(std::size_t seq, std::size_t slot,
                                                    const std::vector<Record>& records) const {
  if (template_) {
    std::vector<std::string> arguments;
    for (const Record& record : records) arguments.insert(arguments.end(), record.begin(), record.end());
    const std::string name = template_->expand(arguments, seq, slot);
    if (!name.empty() && name.back() == '/') return Files{name + "stdout", name + "stderr", name + "seq"};
    return Files{name, name + ".err", name + ".seq"};
  }
  std::string directory = root_;
  for (const Record& record : records) {
    std::vector<std::size_t> order(record.size());
    for (std::size_t c = 0; c < order.size(); ++c) order[c] = c;
    const auto name_of = [&](std::size_t column) {
      return column < names_.size() ? names_[column] : std::to_string(column + 1);
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return name_before(name_of(a), name_of(b)); });
    for (const std::size_t column : order) {
      directory += "/" + as_directory_name(name_of(column)) + "/" + as_directory_name(record[column]);
    }
  }
  directory += "/";
  return Files{directory + "stdout", directory + "stderr", directory + "seq"};
}

bool ResultsDirectory::has_output(const Files& files) {
  std::error_code error;
  return std::filesystem::exists(files.out, error);
}

void ResultsDirectory::write(const Files& files, std::size_t seq, const std::string& out, const std::string& err) {
  const auto parent = std::filesystem::path(files.out).parent_path();
  std::error_code error;
  if (!parent.empty()) std::filesystem::create_directories(parent, error);
  if (error) throw Error("--results: cannot make the directory " + parent.string() + ": " + error.message());
  write_file(files.seq, std::to_string(seq));
  write_file(files.out, out);
  write_file(files.err, err);
}

}  // namespace fanout::tool
