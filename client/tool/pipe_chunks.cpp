// pipe_chunks.cpp
#include "pipe_chunks.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include <fanout/error.hpp>

namespace fanout::tool {

namespace {

// GNU parallel grows a block that held no whole record up to 2 GiB - 1.
constexpr std::size_t kLargestBlock = (std::size_t{1} << 31) - 1;

}  // namespace

PipeChunks::PipeChunks(const RunOptions& options)
    : block_size_(options.block_size),
      records_per_chunk_(options.arguments_per_job == 1 ? 0 : options.arguments_per_job),
      boundary_(options.recend + options.recstart),
      recend_length_(options.recend.size()),
      header_pending_(options.header) {}

void PipeChunks::read_some() {
  if (eof_) return;
  if (target_ <= buffer_.size()) target_ = buffer_.size() + block_size_ - buffer_.size() % block_size_;
  const std::size_t want = std::min<std::size_t>(target_ - buffer_.size(), 1 << 20);
  const std::size_t old_size = buffer_.size();
  buffer_.resize(old_size + want);
  ssize_t got = 0;
  do {
    got = ::read(STDIN_FILENO, buffer_.data() + old_size, want);
  } while (got < 0 && errno == EINTR);
  buffer_.resize(old_size + static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
  if (got < 0 && errno == EAGAIN) return;
  if (got < 0) throw Error(std::string("cannot read stdin: ") + std::strerror(errno));
  if (got == 0) eof_ = true;
  if (header_pending_) {
    const auto newline = buffer_.find('\n');
    if (newline == std::string::npos && !eof_) return;
    const std::size_t length = newline == std::string::npos ? buffer_.size() : newline + 1;
    header_.assign(buffer_, 0, length);
    buffer_.erase(0, length);
    header_pending_ = false;
    target_ = 0;  // the block counts from after the header
  }
  if (eof_ || buffer_.size() >= target_) cut();
}

void PipeChunks::emit(std::size_t length) {
  std::string chunk;
  chunk.reserve(header_.size() + length);
  chunk += header_;
  chunk.append(buffer_, 0, length);
  buffer_.erase(0, length);
  ready_.push_back(std::move(chunk));
}

void PipeChunks::cut() {
  bool cut_any = false;
  if (records_per_chunk_ != 0 && !boundary_.empty()) {
    // -N n: cut after every n-th boundary there is.
    for (;;) {
      std::size_t at = 0;
      std::size_t found = 0;
      for (std::size_t from = 0; found < records_per_chunk_; ++found, from = at + boundary_.size()) {
        at = buffer_.find(boundary_, from);
        if (at == std::string::npos) break;
      }
      if (found < records_per_chunk_ || buffer_.empty()) break;
      const std::size_t length = at + recend_length_;
      if (length == 0) break;
      emit(length);
      cut_any = true;
    }
  } else if (!eof_) {
    // Cut after the last boundary of the block.
    const auto at = buffer_.rfind(boundary_);
    if (at != std::string::npos && at + recend_length_ > 0) {
      emit(at + recend_length_);
      cut_any = true;
    }
  }
  if (eof_) {
    if (!buffer_.empty()) emit(buffer_.size());
    return;
  }
  if (!cut_any && block_size_ < kLargestBlock) {
    // No record ended in this block: a record is longer than a block.
    block_size_ = std::min(kLargestBlock, static_cast<std::size_t>(std::ceil(static_cast<double>(block_size_) * 1.3 + 1)));
  }
}

bool PipeChunks::next(std::string& chunk) {
  if (ready_.empty()) return false;
  chunk = std::move(ready_.front());
  ready_.pop_front();
  return true;
}

std::optional<std::size_t> PipeChunks::total(std::size_t started) const {
  if (!eof_) return std::nullopt;
  return started + ready_.size();
}

}  // namespace fanout::tool
