// fanout/fanout.hpp: everything a program needs to run batches with fanout.
#pragma once

#include <fanout/codec.hpp>
#include <fanout/concurrency.hpp>
#include <fanout/driver.hpp>
#include <fanout/error.hpp>
#include <fanout/init.hpp>
#include <fanout/keyed.hpp>
#include <fanout/process.hpp>
#include <fanout/receipt.hpp>
#include <fanout/task.hpp>
#include <fanout/task_error.hpp>
#include <fanout/value.hpp>
