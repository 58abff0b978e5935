// version.hpp: the version `fanout --version` and `fanout run --version` print. It must equal
// project(fanout VERSION ...) in the top CMakeLists.txt; tests/tool checks that it does.
#pragma once

namespace fanout::tool {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace fanout::tool
