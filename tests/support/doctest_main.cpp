// doctest's runner, compiled once for every test program that does not bring its own main.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
