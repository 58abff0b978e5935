// results_dir.hpp: --results, GNU parallel's layout. A plain name is a directory tree with one
// directory per input column and value: DIR/1/a/2/x/{stdout,stderr,seq} (the column's --header
// name instead of its number, columns ordered by name; / \ TAB NUL in a value written as \_ \\ \t
// \0). A name with replacement strings names each job's files itself: NAME, NAME.err, NAME.seq,
// or NAME/stdout... when it ends in /.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "job_inputs.hpp"
#include "replacement.hpp"

namespace fanout::tool {

class ResultsDirectory {
 public:
  struct Files {
    std::string out;
    std::string err;
    std::string seq;
  };

  // `column_names`: --header's (empty without it).
  ResultsDirectory(const RunOptions& options, const std::vector<std::string>& column_names);

  Files files_for(std::size_t seq, std::size_t slot, const std::vector<Record>& records) const;
  // --resume with --results: the job's output is there already.
  static bool has_output(const Files& files);
  // Writes the job's output and sequence number, making the directories. Throws fanout::Error.
  static void write(const Files& files, std::size_t seq, const std::string& out, const std::string& err);

 private:
  std::string root_;
  std::vector<std::string> names_;
  std::optional<CommandTemplate> template_;  // a name with replacement strings
};

}  // namespace fanout::tool
