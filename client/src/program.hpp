// program.hpp: how this program was started, as recorded by fanout::init.
#pragma once

#include <string>
#include <vector>

namespace fanout::detail {

// The running executable (/proc/self/exe resolved), for re-executing it.
std::string program_path();
// argv as given to fanout::init (empty when init was not called).
std::vector<std::string> program_arguments();

}  // namespace fanout::detail
