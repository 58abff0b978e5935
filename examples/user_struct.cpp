// user_struct: one function makes a struct of yours travel as a task argument or result.
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include <fanout/fanout.hpp>

namespace geometry {

struct Point {
  double x = 0;
  double y = 0;
};

// The customisation point: the members, in a fixed order. Found by argument-dependent lookup, so
// it lives next to the struct. On the wire a Point is a tuple [x, y].
auto fanout_fields(Point& point) { return std::tie(point.x, point.y); }

}  // namespace geometry

const fanout::Task centroid{"geometry.centroid", [](std::vector<geometry::Point> points) {
                              geometry::Point sum;
                              for (const auto& point : points) {
                                sum.x += point.x;
                                sum.y += point.y;
                              }
                              const auto count = static_cast<double>(points.size());
                              return geometry::Point{sum.x / count, sum.y / count};
                            }};

int main(int argc, char** argv) {
  fanout::init(argc, argv);
  const std::vector<geometry::Point> square{{0, 0}, {0, 2}, {2, 2}, {2, 0}};
  const std::vector<geometry::Point> line{{0, 0}, {10, 0}};
  auto [a, b] = fanout::Concurrency::driver("fork").run(centroid(square), centroid(line));
  std::printf("centroid of the square: (%.1f, %.1f)\n", a.x, a.y);
  std::printf("centroid of the line:   (%.1f, %.1f)\n", b.x, b.y);
  return 0;
}
