// pipe_chunks.hpp: --pipe. Stdin cut into chunks at record boundaries,
// each the stdin of one job, the way GNU parallel's spreadstdin cuts it:
//
// - the buffer is filled up to a multiple of --block bytes (1M by default), then cut after the
//   last place where a record ends (--recend, "\n" by default) and the next starts (--recstart);
//   what follows waits for the next block;
// - with -N n, chunks of exactly n records are cut wherever n are there;
// - a block without any boundary grows the block size by 30% (a record longer than a block);
// - at the end of input, whatever is left is the last chunk; an empty input runs no job;
// - --header : the first line goes before every chunk.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <deque>
#include <optional>
#include <string>

#include "run_options.hpp"

namespace fanout::tool {

class PipeChunks {
 public:
  explicit PipeChunks(const RunOptions& options);

  int pollable_fd() const { return eof_ ? -1 : STDIN_FILENO; }
  // More input is wanted: fewer than `ahead` chunks are waiting.
  bool wants_read(std::size_t ahead) const { return !eof_ && ready_.size() < ahead; }
  // One read(); cuts the chunks it completes. Throws fanout::Error when reading fails.
  void read_some();
  // The next chunk, with the header before it; false when none is ready now.
  bool next(std::string& chunk);
  bool exhausted() const { return eof_ && ready_.empty(); }
  std::optional<std::size_t> total(std::size_t started) const;

 private:
  void cut();
  void emit(std::size_t length);

  std::size_t block_size_;
  std::size_t records_per_chunk_;  // -N; 0: cut by size
  std::string boundary_;           // recend + recstart
  std::size_t recend_length_;
  bool header_pending_;
  std::string header_;
  std::string buffer_;
  std::size_t target_ = 0;  // fill buffer_ up to this many bytes, then cut
  bool eof_ = false;
  std::deque<std::string> ready_;
};

}  // namespace fanout::tool
