// fanout/keyed.hpp: results of a keyed batch, in the order the keys were given.
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout {

// Iterates as (key, value) pairs in batch order, like a PHP array with string keys, and looks up
// by key. Keys are unique (a batch with a duplicate key is refused before it runs).
template <class T>
class Keyed {
 public:
  using value_type = std::pair<std::string, T>;
  using iterator = typename std::vector<value_type>::iterator;
  using const_iterator = typename std::vector<value_type>::const_iterator;

  Keyed() = default;
  explicit Keyed(std::vector<value_type> entries) : entries_(std::move(entries)) { build_index(); }

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  iterator begin() noexcept { return entries_.begin(); }
  iterator end() noexcept { return entries_.end(); }
  const_iterator begin() const noexcept { return entries_.begin(); }
  const_iterator end() const noexcept { return entries_.end(); }

  bool contains(std::string_view key) const noexcept { return position(key) != npos; }

  // The value under `key`; throws std::out_of_range naming the key when there is none.
  T& at(std::string_view key) { return entries_[checked_position(key)].second; }
  const T& at(std::string_view key) const { return entries_[checked_position(key)].second; }
  T& operator[](std::string_view key) { return at(key); }
  const T& operator[](std::string_view key) const { return at(key); }

  std::vector<std::string> keys() const {
    std::vector<std::string> keys;
    keys.reserve(entries_.size());
    for (const auto& entry : entries_) keys.push_back(entry.first);
    return keys;
  }

  const std::vector<value_type>& entries() const noexcept { return entries_; }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  void build_index() {
    by_key_.resize(entries_.size());
    for (std::size_t i = 0; i < by_key_.size(); ++i) by_key_[i] = i;
    std::sort(by_key_.begin(), by_key_.end(),
              [&](std::size_t a, std::size_t b) { return entries_[a].first < entries_[b].first; });
  }

  std::size_t position(std::string_view key) const noexcept {
    const auto found = std::lower_bound(by_key_.begin(), by_key_.end(), key,
                                        [&](std::size_t i, std::string_view k) { return entries_[i].first < k; });
    return found != by_key_.end() && entries_[*found].first == key ? *found : npos;
  }

  std::size_t checked_position(std::string_view key) const {
    const std::size_t found = position(key);
    if (found == npos) throw std::out_of_range("fanout::Keyed: no result under key \"" + std::string(key) + "\"");
    return found;
  }

  std::vector<value_type> entries_;
  std::vector<std::size_t> by_key_;  // positions sorted by key, for lookups
};

}  // namespace fanout
